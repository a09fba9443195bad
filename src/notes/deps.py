"""Dependencies of the routes: the caller, and the repository scoped to them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Generic, TypeVar

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from aiodatabases.ext.fastapi import get_database

from .auth import Auth, Caller
from .errors import UnauthorizedError
from .repository import NotesRepository, utc_now

__all__ = [
    "AuthDep",
    "BearerDependency",
    "CallerDep",
    "Repository",
    "get_auth",
    "get_caller",
    "get_repository",
]

#: Where /docs' Authorize button logs in.
TOKEN_URL = "/api/auth/token"

T = TypeVar("T")


async def get_auth(request: Request) -> Auth:
    """Return the application's account operations.

    Dependencies here are coroutine functions, even those that do no I/O: FastAPI runs a
    plain function in a worker thread on every request, which costs more than the work.
    """
    auth: Auth = request.app.state.auth
    return auth


AuthDep = Annotated[Auth, Depends(get_auth)]


class BearerDependency(OAuth2PasswordBearer, Generic[T]):
    """A dependency on the request's bearer token that is also the OpenAPI bearer scheme.

    FastAPI declares a security scheme for every dependency that is one, so the caller and
    the repository are such dependencies themselves, rather than dependencies on a scheme
    object: FastAPI solves one dependency per request instead of two, and each costs more
    than the work it wraps. The document is the same: the scheme keeps the name of FastAPI's
    ``OAuth2PasswordBearer``. Stateless; shared by all requests.

    Args:
        resolve: Turns the request and its bearer token (None without one) into the value.
    """

    def __init__(self, resolve: Callable[[Request, str | None], Awaitable[T]]) -> None:
        super().__init__(tokenUrl=TOKEN_URL, scheme_name="OAuth2PasswordBearer", auto_error=False)
        self._resolve = resolve

    # The scheme's own __call__ returns the token; this one returns what the token stands for.
    async def __call__(self, request: Request) -> T:  # type: ignore[override]
        """Return the value of this request's bearer token."""
        return await self._resolve(request, await super().__call__(request))


def _require(token: str | None) -> str:
    if token is None:
        raise UnauthorizedError("log in: this needs an access token (Authorization: Bearer)")
    return token


async def _caller(request: Request, token: str | None) -> Caller:
    auth: Auth = request.app.state.auth
    return await auth.authenticate(await get_database(request), _require(token))


async def _repository(request: Request, token: str | None) -> NotesRepository:
    auth: Auth = request.app.state.auth
    # The signature and expiry here; the session with the repository's own statements.
    claims = auth.keys.verify(_require(token))
    return NotesRepository(
        await get_database(request),
        owner_id=claims.user_id,
        session_id=claims.session_id,
        clock=getattr(request.app.state, "clock", utc_now),
    )


#: Return the user of the request's bearer token.
#: Raises UnauthorizedError: no token, or one that is not valid (401, ``WWW-Authenticate``).
get_caller = BearerDependency(_caller)

CallerDep = Annotated[Caller, Depends(get_caller)]

#: Return the notes repository of the caller: it sees the caller's notes only.
#: Raises UnauthorizedError like ``get_caller``.
get_repository = BearerDependency(_repository)

Repository = Annotated[NotesRepository, Depends(get_repository)]
