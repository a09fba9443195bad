"""Who the browser is: the session cookie checked against the account store, CSRF checks.

The pages use the same accounts and login sessions as the JSON API (``notes.auth``): logging
in through the page opens a login session like ``POST /api/auth/token`` does, and logging out
revokes it. Only the carrier differs: a signed, HttpOnly cookie instead of a bearer token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from starlette.datastructures import FormData

from aiodatabases.ext.fastapi import DatabaseDep

from ..accounts import AccountsRepository
from ..auth import Caller
from ..repository import NotesRepository, utc_now
from .rendering import CsrfError, LoginRequiredError, PageState
from .security import CSRF_COOKIE, CSRF_FIELD, SESSION_COOKIE, Signer, new_csrf_seed

__all__ = [
    "Browser",
    "BrowserDep",
    "CallerDep",
    "RepositoryDep",
    "checked_form",
    "get_browser",
    "signer_of",
]


@dataclass(slots=True)
class Browser(PageState):
    """The page state of a request, with the caller behind its session cookie (or None)."""

    caller: Caller | None = None
    csrf_binding: str = ""


def signer_of(request: Request) -> Signer:
    """Return the application's cookie and CSRF signer."""
    signer: Signer = request.app.state.web_signer
    return signer


async def get_browser(request: Request, database: DatabaseDep) -> Browser:
    """Read the session and CSRF cookies of a request into its page state.

    A session cookie counts only while its login session is open and its user exists: a
    logout, a password change elsewhere or a deleted account ends it at once.
    """
    signer = signer_of(request)
    browser = Browser()
    cookie = signer.read_session(request.cookies.get(SESSION_COOKIE))
    if cookie is not None:
        account = await AccountsRepository(database).in_session(cookie.user_id, cookie.session_id)
        if account is not None:
            browser.caller = Caller(account.public(), cookie.session_id)
            browser.user = browser.caller.user
            browser.csrf_binding = f"session:{cookie.session_id}"
    if not browser.csrf_binding:
        seed = request.cookies.get(CSRF_COOKIE)
        if not seed or len(seed) > 64:
            seed = browser.new_csrf_seed = new_csrf_seed()
        browser.csrf_binding = f"anonymous:{seed}"
    browser.csrf_token = signer.csrf_token(browser.csrf_binding)
    request.state.web = browser
    return browser


BrowserDep = Annotated[Browser, Depends(get_browser)]


async def require_caller(browser: BrowserDep) -> Caller:
    """Return the logged-in caller; without one, the page redirects to the login page."""
    if browser.caller is None:
        raise LoginRequiredError
    return browser.caller


CallerDep = Annotated[Caller, Depends(require_caller)]


async def get_notes(request: Request, database: DatabaseDep, caller: CallerDep) -> NotesRepository:
    """Return the notes repository of the logged-in user: it sees their notes only."""
    clock = getattr(request.app.state, "clock", utc_now)
    return NotesRepository(database, owner_id=caller.user.id, clock=clock)


RepositoryDep = Annotated[NotesRepository, Depends(get_notes)]


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None:
        return True  # older browsers and privacy settings send none; the token decides
    own = f"{request.url.scheme}://{request.url.netloc}"
    return origin == own


async def checked_form(request: Request, browser: Browser) -> FormData:
    """Return the posted form once its CSRF token (and Origin, when sent) checks out.

    Raises:
        CsrfError: The token is missing or is not this browser's, or the form was posted
            from another origin. Nothing has been done.
    """
    form = await request.form()
    if not _same_origin(request) or not signer_of(request).check_csrf(
        browser.csrf_binding, form.get(CSRF_FIELD)
    ):
        raise CsrfError
    return form
