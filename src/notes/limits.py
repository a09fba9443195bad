"""An ASGI middleware that refuses request bodies over a size before anything parses them."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import problem_response

__all__ = ["BodySizeLimit", "BodyTooLarge"]


class BodyTooLarge(HTTPException):
    """Raised from ``receive()`` when a request body grows past the limit.

    An ``HTTPException``, so that FastAPI lets it through its body parsing untouched and the
    application's handler answers 413.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(
            status_code=413,
            detail=f"The request body is larger than {limit} bytes.",
            headers={"Connection": "close"},
        )


class BodySizeLimit:
    """Answer 413 to HTTP requests whose body is over ``limit`` bytes.

    A ``Content-Length`` over the limit is refused before the body is read; one within it
    lets the request through untouched (the server delivers no more body than it declares, as
    HTTP requires), as does an HTTP/1 request with neither ``Content-Length`` nor
    ``Transfer-Encoding``, which has no body. A body without a length (chunked, or HTTP/2's
    streams) is counted as it arrives, and refused as soon as it passes the limit: never more
    than ``limit`` bytes plus one chunk are read. Stateless; shared by all requests.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run one request under the limit."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared, framed = _framing(scope)
        if declared is not None and declared > self.limit:
            await self._refuse(scope, receive, send)
            return
        if not framed and (declared is not None or scope.get("http_version") in _HTTP1):
            await self.app(scope, receive, send)  # a body within its length, or none at all
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, watched_send)
        except BodyTooLarge:
            # Read outside the application's exception handlers (by a middleware, say).
            if started:
                raise
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        error = BodyTooLarge(self.limit)
        response = problem_response(
            413, str(error.detail), instance=scope.get("path"), headers=error.headers
        )
        await response(scope, receive, send)


_HTTP1 = frozenset({"1.0", "1.1"})


def _framing(scope: Scope) -> tuple[int | None, bool]:
    """The request's declared body length (None: none, or not a number), and whether anything
    else frames its body: ``Transfer-Encoding`` (which overrides a length, RFC 9112 6.3) or a
    ``Content-Length`` that is not a number or not the only one."""
    declared: int | None = None
    lengths = 0
    framed = False
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            lengths += 1
            try:
                declared = int(value)
            except ValueError:
                framed = True
        elif name == b"transfer-encoding":
            framed = True
    if lengths > 1 or (declared is not None and declared < 0):
        framed = True
    return declared, framed
