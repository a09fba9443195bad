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

    A ``Content-Length`` over the limit is refused before the body is read. A body without
    one (chunked) is counted as it arrives, and refused as soon as it passes the limit:
    never more than ``limit`` bytes plus one chunk are read. Stateless; shared by all
    requests.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run one request under the limit."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.limit:
            await self._refuse(scope, receive, send)
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


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
