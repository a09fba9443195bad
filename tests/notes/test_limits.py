"""Request bodies over 1 MiB get 413 before they are parsed, chunked ones included."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI
from pydantic import SecretStr
from starlette.types import Message, Receive, Scope, Send

from notes import Settings, create_app
from notes.limits import BodySizeLimit
from notes.settings import MAX_BODY_SIZE

from .helpers import assert_problem


def padded_note(size: int) -> bytes:
    """A valid note as JSON of exactly size bytes (the padding is spaces JSON ignores)."""
    core = json.dumps({"title": "padded"}).encode()
    return core[:-1] + b" " * (size - len(core)) + b"}"


async def chunks(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    """Yield data in chunks, so that httpx sends it without a Content-Length."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def test_body_of_exactly_the_limit_is_accepted(client: httpx.AsyncClient) -> None:
    """A 1 MiB body is parsed and the note created."""
    response = await client.post(
        "/api/notes",
        content=padded_note(MAX_BODY_SIZE),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 201


async def test_content_length_over_the_limit_gets_a_413_problem(
    client: httpx.AsyncClient,
) -> None:
    """A body of 1 MiB + 1 byte with Content-Length is a 413 problem, and nothing is stored."""
    response = await client.post(
        "/api/notes",
        content=padded_note(MAX_BODY_SIZE + 1),
        headers={"Content-Type": "application/json"},
    )
    problem = assert_problem(response, 413)
    assert problem["title"] == "Content Too Large"
    assert response.headers["connection"] == "close"
    assert (await client.get("/api/notes")).json()["items"] == []


async def test_chunked_body_over_the_limit_gets_a_413_problem(client: httpx.AsyncClient) -> None:
    """A body sent in chunks without Content-Length is counted and refused past 1 MiB."""
    request = client.build_request(
        "POST",
        "/api/notes",
        content=chunks(padded_note(MAX_BODY_SIZE + 1)),
        headers={"Content-Type": "application/json"},
    )
    assert "content-length" not in request.headers
    assert request.headers["transfer-encoding"] == "chunked"
    response = await client.send(request)
    assert_problem(response, 413)
    assert (await client.get("/api/notes")).json()["items"] == []


async def test_chunked_body_within_the_limit_is_accepted(client: httpx.AsyncClient) -> None:
    """A chunked body under the limit goes through."""
    response = await client.post(
        "/api/notes",
        content=chunks(padded_note(300_000)),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 201


async def test_oversized_body_is_refused_without_being_read(settings: Settings) -> None:
    """With a Content-Length over the limit, the app never reads a byte of the body."""
    app = create_app(settings)
    reads: list[int] = []

    async def counting(scope: Scope, receive: Receive, send: Send) -> None:
        async def counted_receive() -> Message:
            message = await receive()
            reads.append(len(message.get("body", b"")))
            return message

        await app(scope, counted_receive, send)

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=counting)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            response = await http.post(
                "/api/notes",
                content=b"x" * (MAX_BODY_SIZE + 1),
                headers={"Content-Type": "application/json"},
            )
    assert response.status_code == 413
    assert reads == []


async def test_chunked_body_is_read_no_further_than_past_the_limit(settings: Settings) -> None:
    """A chunked body is read only until it passes the limit, not to its end."""
    app = create_app(settings.model_copy(update={"max_body_size": 1000}))
    read = 0

    async def counting(scope: Scope, receive: Receive, send: Send) -> None:
        async def counted_receive() -> Message:
            nonlocal read
            message = await receive()
            read += len(message.get("body", b""))
            return message

        await app(scope, counted_receive, send)

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=counting)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            response = await http.post(
                "/api/notes",
                content=chunks(b" " * 100_000, size=100),
                headers={"Content-Type": "application/json"},
            )
    assert response.status_code == 413
    assert read <= 1100


async def test_limit_applies_to_every_write_route(client: httpx.AsyncClient) -> None:
    """PUT, PATCH and batch bodies over the limit are 413 problems too."""
    big = padded_note(MAX_BODY_SIZE + 10)
    for method, path in (
        ("PUT", "/api/notes/1"),
        ("PATCH", "/api/notes/1"),
        ("POST", "/api/notes/batch"),
    ):
        response = await client.request(
            method, path, content=big, headers={"Content-Type": "application/json"}
        )
        assert_problem(response, 413)


def test_limit_is_a_setting() -> None:
    """NOTES_MAX_BODY_SIZE defaults to 1 MiB."""
    assert Settings().max_body_size == 1024 * 1024
    assert isinstance(create_app(Settings(jwt_secret=SecretStr("s" * 40))), FastAPI)


async def _through(scope_headers: list[tuple[bytes, bytes]], http_version: str = "1.1") -> bool:
    """Run BodySizeLimit (limit 100) around an app that reads the body; return whether the
    app got the server's own receive (True) or a counting one."""
    seen: list[Receive] = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(receive)
        await receive()
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive() -> Message:
        return {"type": "http.request", "body": b"x" * 10, "more_body": False}

    async def send(message: Message) -> None:
        pass

    scope = {"type": "http", "http_version": http_version, "headers": scope_headers, "path": "/"}
    await BodySizeLimit(inner, limit=100)(scope, receive, send)
    return seen[0] is receive


async def test_only_bodies_without_a_trusted_length_are_counted() -> None:
    """A valid Content-Length within the limit, or an HTTP/1 request with no body, reaches the
    app untouched; chunked bodies, HTTP/2 streams without a length, and lengths that are not
    a single number are counted as they arrive."""
    assert await _through([(b"content-length", b"10")])
    assert await _through([])
    assert await _through([], http_version="1.0")
    assert not await _through([(b"transfer-encoding", b"chunked")])
    assert not await _through([(b"content-length", b"10"), (b"transfer-encoding", b"chunked")])
    assert not await _through([], http_version="2")
    assert not await _through([(b"content-length", b"ten")])
    assert not await _through([(b"content-length", b"10"), (b"content-length", b"20")])
    assert not await _through([(b"content-length", b"-1")])
