"""Dependencies of the routes: the caller, and the repository scoped to them."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from aiodatabases.ext.fastapi import get_database

from .auth import Auth, Caller
from .errors import UnauthorizedError
from .repository import NotesRepository, utc_now

__all__ = [
    "AuthDep",
    "CallerDep",
    "Repository",
    "get_auth",
    "get_caller",
    "get_repository",
    "oauth2_scheme",
]

#: The bearer scheme of the OpenAPI document: /docs' Authorize button logs in at tokenUrl.
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/auth/token", auto_error=False)


async def get_auth(request: Request) -> Auth:
    """Return the application's account operations.

    Dependencies here are coroutine functions, even those that do no I/O: FastAPI runs a
    plain function in a worker thread on every request, which costs more than the work.
    """
    auth: Auth = request.app.state.auth
    return auth


AuthDep = Annotated[Auth, Depends(get_auth)]


async def _authenticate(request: Request, token: str | None) -> Caller:
    if token is None:
        raise UnauthorizedError("log in: this needs an access token (Authorization: Bearer)")
    auth: Auth = request.app.state.auth
    return await auth.authenticate(await get_database(request), token)


# The caller and the repository read the application's auth and database themselves rather
# than through AuthDep and DatabaseDep: each dependency FastAPI solves costs more than the
# lookup, on every request.
async def get_caller(
    request: Request, token: Annotated[str | None, Depends(oauth2_scheme)]
) -> Caller:
    """Return the user of the request's bearer token.

    Raises:
        UnauthorizedError: No token, or one that is not valid (401, ``WWW-Authenticate``).
    """
    return await _authenticate(request, token)


CallerDep = Annotated[Caller, Depends(get_caller)]


async def get_repository(
    request: Request, token: Annotated[str | None, Depends(oauth2_scheme)]
) -> NotesRepository:
    """Return the notes repository of the caller: it sees the caller's notes only.

    Raises:
        UnauthorizedError: No token, or one that is not valid (401, ``WWW-Authenticate``).
    """
    caller = await _authenticate(request, token)
    clock = getattr(request.app.state, "clock", utc_now)
    return NotesRepository(await get_database(request), owner_id=caller.user.id, clock=clock)


Repository = Annotated[NotesRepository, Depends(get_repository)]
