"""Domain errors, and the one place that turns errors into RFC 9457 problem responses.

Routes raise the errors below; they never build error responses or catch database errors.
A response never carries a traceback, SQL or a driver message: those go to the log.
"""

from __future__ import annotations

import http
import logging
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, cast

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

import aiodatabases

__all__ = [
    "PROBLEM_JSON",
    "BadRequestError",
    "ConflictError",
    "ForbiddenError",
    "NotFoundError",
    "NotesError",
    "PayloadTooLargeError",
    "PreconditionFailedError",
    "TooManyRequestsError",
    "UnauthorizedError",
    "install_error_handlers",
    "problem_response",
]

PROBLEM_JSON = "application/problem+json"

logger = logging.getLogger("notes.errors")


class NotesError(Exception):
    """The root of the service's domain errors; each maps to one HTTP status."""

    status: ClassVar[int] = 500
    type: ClassVar[str] = "about:blank"

    def __init__(self, detail: str, **extensions: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extensions = extensions
        self.headers: dict[str, str] = {}


class BadRequestError(NotesError):
    """The request is malformed in a way validation cannot say (a bad cursor, say)."""

    status = 400


class UnauthorizedError(NotesError):
    """No valid credentials: a missing, malformed, expired or revoked token, or a bad login.

    Answers 401 with ``WWW-Authenticate: Bearer`` (RFC 6750); ``error="invalid_token"`` is
    added when a token was given but refused.
    """

    status = 401

    def __init__(self, detail: str, *, invalid_token: bool = False) -> None:
        super().__init__(detail)
        self.headers["WWW-Authenticate"] = (
            'Bearer error="invalid_token"' if invalid_token else "Bearer"
        )


class ForbiddenError(NotesError):
    """The caller is known but may not do this (a wrong current password, say)."""

    status = 403


class TooManyRequestsError(NotesError):
    """Too many failed logins for one account: answers 429 with ``Retry-After``."""

    status = 429

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail)
        self.headers["Retry-After"] = str(max(1, retry_after))


class NotFoundError(NotesError):
    """The resource does not exist (or is not visible to the caller)."""

    status = 404


class ConflictError(NotesError):
    """The request conflicts with the state of the resource."""

    status = 409


class PreconditionFailedError(NotesError):
    """An ``If-Match`` precondition failed: the client's version is stale."""

    status = 412
    type = "urn:notes:problem:stale-version"


class PayloadTooLargeError(NotesError):
    """The request body is larger than the service accepts."""

    status = 413


def problem_response(
    status: int,
    detail: str | None = None,
    *,
    type_: str = "about:blank",
    instance: str | None = None,
    extensions: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """Build an ``application/problem+json`` response; the title is the status phrase."""
    body: dict[str, Any] = {"type": type_, "title": _phrase(status), "status": status}
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    for key, value in (extensions or {}).items():
        body.setdefault(key, value)
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


#: The names RFC 9110 gives where Python's http module keeps older ones.
_PHRASES = {413: "Content Too Large", 422: "Unprocessable Content"}


def _phrase(status: int) -> str:
    if status in _PHRASES:
        return _PHRASES[status]
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _validation_errors(errors: Sequence[Any]) -> list[dict[str, Any]]:
    # Only where and what: "input" may echo a megabyte, "ctx" may hold exception objects.
    return [
        {
            "loc": [str(part) for part in error.get("loc", ())],
            "msg": str(error.get("msg", "")),
            "type": str(error.get("type", "")),
        }
        for error in errors
    ]


async def _notes_error(request: Request, exc: Exception) -> Response:
    exc = cast(NotesError, exc)
    return problem_response(
        exc.status,
        exc.detail,
        type_=exc.type,
        instance=request.url.path,
        extensions=exc.extensions,
        headers=exc.headers or None,
    )


async def _validation_error(request: Request, exc: Exception) -> Response:
    exc = cast(RequestValidationError, exc)
    errors = _validation_errors(exc.errors())
    return problem_response(
        422,
        "The request is not valid; see errors.",
        type_="urn:notes:problem:validation",
        instance=request.url.path,
        extensions={"errors": errors},
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    exc = cast(StarletteHTTPException, exc)
    if exc.status_code < 400:
        return Response(status_code=exc.status_code, headers=exc.headers)
    detail: str | None = exc.detail if isinstance(exc.detail, str) else None
    if detail == _phrase(exc.status_code):
        detail = None
    return problem_response(exc.status_code, detail, instance=request.url.path, headers=exc.headers)


async def _integrity_error(request: Request, exc: Exception) -> Response:
    logger.warning("integrity error on %s %s: %r", request.method, request.url.path, exc)
    return problem_response(
        409, "The change conflicts with the stored data.", instance=request.url.path
    )


async def _unavailable(request: Request, exc: Exception) -> Response:
    logger.warning("database busy on %s %s: %r", request.method, request.url.path, exc)
    return problem_response(
        503,
        "The database is busy; try again shortly.",
        instance=request.url.path,
        headers={"Retry-After": "1"},
    )


async def _server_error(request: Request, exc: Exception) -> Response:
    logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(500, "An unexpected error occurred.", instance=request.url.path)


def install_error_handlers(app: FastAPI) -> None:
    """Map domain, validation, HTTP, database and unexpected errors to problem responses."""
    app.add_exception_handler(NotesError, _notes_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(aiodatabases.IntegrityError, _integrity_error)
    app.add_exception_handler(aiodatabases.PoolTimeoutError, _unavailable)
    app.add_exception_handler(aiodatabases.Error, _server_error)
    app.add_exception_handler(Exception, _server_error)
