"""Accounts under /api: register, log in (OAuth2 password flow), refresh, log out, me."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response, status
from fastapi.security import OAuth2PasswordRequestForm

from aiodatabases.ext.fastapi import DatabaseDep

from ..deps import AuthDep, CallerDep
from ..schemas import PasswordChange, Problem, RefreshRequest, Registration, TokenPair, User

__all__ = ["auth_router", "users_router"]

_PROBLEM: dict[str, Any] = {"model": Problem, "content": {"application/problem+json": {}}}
_VALIDATION: dict[int | str, dict[str, Any]] = {
    400: {**_PROBLEM, "description": "The body cannot be parsed (not JSON, not UTF-8)."},
    422: {**_PROBLEM, "description": "The request is not valid."},
}
_UNAUTHORIZED: dict[int | str, dict[str, Any]] = {
    401: {
        **_PROBLEM,
        "description": "No valid access token (see WWW-Authenticate).",
        "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
    }
}
_THROTTLED: dict[int | str, dict[str, Any]] = {
    429: {
        **_PROBLEM,
        "description": "Too many failed logins for this account; wait Retry-After seconds.",
        "headers": {"Retry-After": {"schema": {"type": "string"}}},
    }
}
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}

auth_router = APIRouter(prefix="/auth", tags=["auth"], responses=_VALIDATION)
users_router = APIRouter(prefix="/users", tags=["users"], responses=_VALIDATION)


@auth_router.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    response_model=User,
    summary="Create an account",
    responses={409: {**_PROBLEM, "description": "The email address has an account already."}},
)
async def register(registration: Registration, auth: AuthDep, database: DatabaseDep) -> User:
    """Create an account with an email address and a password (8 to 256 characters)."""
    return await auth.register(database, registration.email, registration.password)


@auth_router.post(
    "/token",
    response_model=TokenPair,
    summary="Log in: trade an email and a password for tokens (OAuth2 password flow)",
    responses={
        401: {**_PROBLEM, "description": "The email address or the password is wrong."},
        **_THROTTLED,
    },
)
async def token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    auth: AuthDep,
    database: DatabaseDep,
    response: Response,
) -> TokenPair:
    """Log in with the email as `username`; answers an access token and a refresh token."""
    response.headers.update(_NO_STORE)
    return await auth.login(database, form.username, form.password)


@auth_router.post(
    "/refresh",
    response_model=TokenPair,
    summary="Trade a refresh token for a new pair (rotation)",
    responses={401: {**_PROBLEM, "description": "The refresh token is not valid."}},
)
async def refresh(
    request: RefreshRequest, auth: AuthDep, database: DatabaseDep, response: Response
) -> TokenPair:
    """Spend a refresh token for new tokens; one spent before ends its whole session."""
    response.headers.update(_NO_STORE)
    return await auth.refresh(database, request.refresh_token)


@auth_router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Log out: end this session",
    responses=_UNAUTHORIZED,
)
async def logout(caller: CallerDep, auth: AuthDep, database: DatabaseDep) -> Response:
    """End the session of the access token: it and its refresh tokens stop working."""
    await auth.logout(database, caller)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@users_router.get("/me", response_model=User, summary="Who am I", responses=_UNAUTHORIZED)
async def me(caller: CallerDep) -> User:
    """Return the account of the access token."""
    return caller.user


@users_router.put(
    "/me/password",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Change my password",
    responses={
        **_UNAUTHORIZED,
        403: {**_PROBLEM, "description": "The current password is wrong."},
        **_THROTTLED,
    },
)
async def change_password(
    change: PasswordChange, caller: CallerDep, auth: AuthDep, database: DatabaseDep
) -> Response:
    """Replace the password; every other session of the account ends."""
    await auth.change_password(database, caller, change.current_password, change.new_password)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
