"""Dependencies of the routes: the caller, and the repository scoped to them."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from aiodatabases.ext.fastapi import DatabaseDep

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


async def get_caller(
    auth: AuthDep,
    database: DatabaseDep,
    token: Annotated[str | None, Depends(oauth2_scheme)],
) -> Caller:
    """Return the user of the request's bearer token.

    Raises:
        UnauthorizedError: No token, or one that is not valid (401, ``WWW-Authenticate``).
    """
    if token is None:
        raise UnauthorizedError("log in: this needs an access token (Authorization: Bearer)")
    return await auth.authenticate(database, token)


CallerDep = Annotated[Caller, Depends(get_caller)]


async def get_repository(
    request: Request, database: DatabaseDep, caller: CallerDep
) -> NotesRepository:
    """Return the notes repository of this request: it sees the caller's notes only."""
    clock = getattr(request.app.state, "clock", utc_now)
    return NotesRepository(database, owner_id=caller.user.id, clock=clock)


Repository = Annotated[NotesRepository, Depends(get_repository)]
