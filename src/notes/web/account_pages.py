"""Sign up, log in and log out, with the accounts and login sessions of ``notes.auth``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from aiodatabases.ext.fastapi import DatabaseDep

from ..auth import BAD_LOGIN
from ..deps import AuthDep
from ..errors import ConflictError, TooManyRequestsError, UnauthorizedError
from .forms import read_registration
from .rendering import WebRoute, redirect, render
from .security import SESSION_COOKIE, delete_cookie, safe_next, set_cookie
from .session import BrowserDep, checked_form, signer_of

__all__ = ["router"]

router = APIRouter(route_class=WebRoute, include_in_schema=False)


def _account_page(
    request: Request,
    *,
    signup: bool,
    email: str = "",
    next_path: str = "/",
    errors: dict[str, str] | None = None,
    form_error: str | None = None,
    status_code: int = 200,
) -> Response:
    context: dict[str, Any] = {
        "signup": signup,
        "heading": "Sign up" if signup else "Log in",
        "action": "/signup" if signup else "/login",
        "email": email,
        "next": next_path,
        "errors": errors or {},
        "form_error": form_error,
    }
    return render(request, "account.html", context, status_code=status_code)


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


async def _log_in(
    request: Request, database: DatabaseDep, auth: AuthDep, email: str, password: str, target: str
) -> Response:
    """Open a login session (as the token endpoint does) and hand the browser its cookie.

    Raises:
        UnauthorizedError: The email address or the password is wrong.
        TooManyRequestsError: This account failed too often lately.
    """
    pair = await auth.login(database, email, password)
    claims = auth.keys.verify(pair.access_token)
    lifetime = request.app.state.settings.refresh_token_seconds
    response = redirect(target)
    cookie = signer_of(request).session_cookie(claims.user_id, claims.session_id, lifetime)
    set_cookie(request, response, SESSION_COOKIE, cookie, max_age=lifetime)
    return response


@router.get("/login")
async def login_page(request: Request, browser: BrowserDep) -> Response:
    """The login form; a logged-in user goes straight to their notes."""
    target = safe_next(request.query_params.get("next"))
    if browser.caller is not None:
        return redirect(target)
    return _account_page(request, signup=False, next_path=target)


@router.post("/login")
async def login(
    request: Request, browser: BrowserDep, database: DatabaseDep, auth: AuthDep
) -> Response:
    """Check the email and password; on success the browser gets a session cookie."""
    form = await checked_form(request, browser)
    email, password = _text(form.get("email")), _text(form.get("password"))
    target = safe_next(_text(form.get("next")))
    errors = {}
    if not email.strip():
        errors["email"] = "Enter your email address."
    if not password:
        errors["password"] = "Enter your password."
    if errors:
        return _account_page(
            request, signup=False, email=email, next_path=target, errors=errors, status_code=422
        )
    try:
        return await _log_in(request, database, auth, email, password, target)
    except UnauthorizedError:
        message = BAD_LOGIN[:1].upper() + BAD_LOGIN[1:] + "."
        status_code = 400
    except TooManyRequestsError:
        message = "Too many failed attempts for this account. Wait a while and try again."
        status_code = 429
    return _account_page(
        request,
        signup=False,
        email=email,
        next_path=target,
        form_error=message,
        status_code=status_code,
    )


@router.get("/signup")
async def signup_page(request: Request, browser: BrowserDep) -> Response:
    """The sign-up form."""
    if browser.caller is not None:
        return redirect("/")
    return _account_page(request, signup=True)


@router.post("/signup")
async def signup(
    request: Request, browser: BrowserDep, database: DatabaseDep, auth: AuthDep
) -> Response:
    """Create an account and log it in; errors come back next to their fields."""
    form = await checked_form(request, browser)
    email = _text(form.get("email"))
    registration, errors = read_registration(form)
    if registration is not None:
        try:
            await auth.register(database, registration.email, registration.password)
        except ConflictError:
            errors = {"email": "An account with this email address exists already; log in."}
    if registration is None or errors:
        return _account_page(request, signup=True, email=email, errors=errors, status_code=422)
    response = await _log_in(
        request, database, auth, registration.email, registration.password, "/"
    )
    response.headers["Location"] = "/?notice=welcome"
    return response


@router.post("/logout")
async def logout(
    request: Request, browser: BrowserDep, database: DatabaseDep, auth: AuthDep
) -> Response:
    """End the login session (it stops working everywhere) and forget the cookie."""
    await checked_form(request, browser)
    if browser.caller is not None:
        await auth.logout(database, browser.caller)
    response = redirect("/login", notice="logged-out")
    delete_cookie(request, response, SESSION_COOKIE)
    return response
