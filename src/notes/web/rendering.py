"""Templates, security headers, and the route class that turns errors into pages.

The JSON API answers errors with problem details; a person in a browser gets a page
instead. ``WebRoute`` does that for every route of the pages, in one place: a missing login
becomes a redirect to the login page, a refused form a 403 page, a missing note a 404 page.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from importlib.resources import files
from typing import Any
from urllib.parse import urlencode

import jinja2
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from ..errors import NotesError
from ..schemas import User
from .markdown import render_markdown
from .security import CONTENT_SECURITY_POLICY, CSRF_COOKIE, set_cookie

__all__ = [
    "STATIC_PATH",
    "CsrfError",
    "LoginRequiredError",
    "WebRoute",
    "redirect",
    "render",
    "static_directory",
]

logger = logging.getLogger("notes.web")

#: Where the pages' own stylesheet and script are served.
STATIC_PATH = "/static/web"

_PACKAGE = files("notes.web")

#: Fixed messages a redirect may ask the next page to show (never text from the URL).
NOTICES = {
    "created": "Note created.",
    "saved": "Note saved.",
    "deleted": "Note deleted.",
    "logged-out": "You are logged out.",
    "welcome": "Welcome! Your account is ready.",
}


class LoginRequiredError(Exception):
    """The page needs a logged-in user; answered with a redirect to the login page."""


class CsrfError(Exception):
    """A form came without its CSRF token, with another browser's, or from another origin."""


def static_directory() -> str:
    """The folder of the pages' static files."""
    return str(_PACKAGE / "static")


def _static_versions() -> dict[str, str]:
    """A content hash per static file, so that a changed file gets a new URL."""
    versions: dict[str, str] = {}
    for entry in (_PACKAGE / "static").iterdir():
        if entry.is_file():
            versions[entry.name] = hashlib.sha256(entry.read_bytes()).hexdigest()[:12]
    return versions


def _templates() -> Jinja2Templates:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("notes.web", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    versions = _static_versions()

    def static(name: str) -> str:
        return f"{STATIC_PATH}/{name}?v={versions.get(name, '0')}"

    environment.globals["static"] = static
    environment.filters["markdown"] = render_markdown
    return Jinja2Templates(env=environment)


_TEMPLATES = _templates()

_SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    # Pages show one user's notes: no shared cache keeps them, no back button shows them
    # after a logout.
    "Cache-Control": "no-store",
}


@dataclass(slots=True)
class PageState:
    """What the pages know about the browser of a request; set by the session dependency."""

    user: User | None = None
    csrf_token: str = ""
    #: A fresh anonymous CSRF value to store in the browser's cookie with this response.
    new_csrf_seed: str | None = None


def page_state(request: Request) -> PageState:
    """Return the request's page state (empty until the session dependency has run)."""
    state = getattr(request.state, "web", None)
    return state if isinstance(state, PageState) else PageState()


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    status_code: int = 200,
) -> Response:
    """Render a page with the user, CSRF token and notice that every page may show."""
    state = page_state(request)
    notice = NOTICES.get(request.query_params.get("notice", ""))
    values: dict[str, Any] = {
        "user": state.user,
        "csrf_token": state.csrf_token,
        "notice": notice,
        "errors": {},
    }
    values.update(context or {})
    return _TEMPLATES.TemplateResponse(request, template, values, status_code=status_code)


def redirect(path: str, **query: str) -> RedirectResponse:
    """A 303 See Other to a path of this site (after a form post, the browser GETs it)."""
    target = f"{path}?{urlencode(query)}" if query else path
    return RedirectResponse(target, status_code=303)


def _error_page(request: Request, status: int, title: str, message: str) -> Response:
    return render(request, "error.html", {"title": title, "message": message}, status_code=status)


def _finish(request: Request, response: Response) -> Response:
    """Add the security headers, and the anonymous CSRF cookie when one was made."""
    for name, value in _SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    seed = page_state(request).new_csrf_seed
    if seed is not None:
        set_cookie(request, response, CSRF_COOKIE, seed, max_age=None)
    return response


class WebRoute(APIRoute):
    """A route of the pages: errors become pages or redirects, never problem JSON."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """Wrap the handler FastAPI builds so that its errors are answered as pages."""
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                response = await handler(request)
            except LoginRequiredError:
                # Back to the page after logging in; a form posted logged out is not resent.
                target = request.url.path if request.method == "GET" else "/"
                if request.method == "GET" and request.url.query:
                    target += f"?{request.url.query}"
                query = {"next": target} if target != "/" else {}
                response = redirect("/login", **query)
            except CsrfError:
                response = _error_page(
                    request,
                    403,
                    "This form has expired",
                    "The form was sent without its security token (or from another site), "
                    "so nothing was done. Go back, reload the page and try again.",
                )
            except RequestValidationError:
                response = _error_page(
                    request, 404, "Page not found", "There is no such page here."
                )
            except NotesError as exc:
                response = _error_page(
                    request,
                    exc.status,
                    _TITLES.get(exc.status, "Error"),
                    _MESSAGES.get(exc.status, exc.detail),
                )
            except HTTPException as exc:
                if exc.status_code == 413:
                    response = _error_page(
                        request, 413, "Too large", "What you sent is too large to save."
                    )
                else:
                    raise
            return _finish(request, response)

        return handle


_TITLES = {400: "Bad request", 404: "Not found", 409: "Conflict", 429: "Too many attempts"}
_MESSAGES = {
    404: "There is no such note: it was deleted, or it is not yours.",
    409: "That conflicts with what is saved; reload the page and try again.",
}
