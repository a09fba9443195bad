"""Call one HTTP contender's ASGI app in process: its lifespan, then requests of one scenario.

Run by ``instructions.py`` under callgrind, with the contender's own interpreter (standard
library only here). No server, no sockets: the requests go straight to the app, 64 at a time,
as uvicorn would pass them, and every answer must be a 2xx.

```
python asgi_load.py APP SCENARIO CALLS             # a minimal contender, e.g. tutorial:app
python asgi_load.py notes.app:create_app SCENARIO CALLS --factory
```

A minimal contender finds its database in ``BENCH_DSN`` (seeded by ``seed.py``). The notes
service (``--factory``) reads ``NOTES_*`` from the environment; before the requests this
registers a user, logs in and creates 200 notes through its own routes, and the scenario then
calls ``/api/notes`` with that token.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
import urllib.parse
from pathlib import Path
from typing import Any

CONCURRENCY = 64
SEEDED_NOTES = 200
WORDS = ("apple", "river", "stone", "cloud", "paper", "light", "green", "quiet", "north", "ember")


class Client:
    """Sends requests to an ASGI app the way a server does, one ``call`` per request."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.headers: list[tuple[bytes, bytes]] = [(b"host", b"127.0.0.1")]

    async def call(
        self, method: str, target: str, body: bytes = b"", content_type: bytes | None = None
    ) -> tuple[int, bytes]:
        """Send one request; return its status and body."""
        path, _, query = target.partition("?")
        headers = list(self.headers)
        if content_type is not None:
            headers += [(b"content-type", content_type), (b"content-length", b"%d" % len(body))]
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": urllib.parse.unquote(path),
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": headers,
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
        }
        pending = [{"type": "http.request", "body": body, "more_body": False}]
        disconnected = asyncio.get_running_loop().create_future()

        async def receive() -> dict[str, Any]:
            if pending:
                return pending.pop()
            await disconnected  # as a server does after the body: only a disconnect is left
            return {"type": "http.disconnect"}

        status: list[int] = []
        chunks: list[bytes] = []

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, send)
        disconnected.cancel()
        answer = b"".join(chunks)
        if not status or not 200 <= status[0] < 300:
            raise SystemExit(f"{method} {target}: {status} {answer[:500]!r}")
        return status[0], answer

    async def post_json(self, target: str, payload: Any) -> Any:
        _, answer = await self.call(
            "POST", target, json.dumps(payload).encode(), b"application/json"
        )
        return json.loads(answer)


async def prepare_service(client: Client) -> tuple[str, list[int]]:
    """Register, log in and seed notes; return the API prefix and the note ids."""
    email, password = "counting@example.com", "counting-password-1"
    await client.post_json("/api/auth/register", {"email": email, "password": password})
    form = urllib.parse.urlencode(
        {"grant_type": "password", "username": email, "password": password}
    )
    _, answer = await client.call(
        "POST", "/api/auth/token", form.encode(), b"application/x-www-form-urlencoded"
    )
    client.headers.append(
        (b"authorization", b"Bearer " + json.loads(answer)["access_token"].encode())
    )
    ids: list[int] = []
    for start in range(0, SEEDED_NOTES, 100):
        batch = [
            {
                "title": f"note {start + i}",
                "body": " ".join(WORDS[(start + i + k) % len(WORDS)] for k in range(20)),
                "tags": [WORDS[(start + i) % len(WORDS)]],
            }
            for i in range(100)
        ]
        ids += [note["id"] for note in await client.post_json("/api/notes/batch", {"notes": batch})]
    return "/api/notes", ids


async def load(client: Client, scenario: str, calls: int, prefix: str, ids: list[int]) -> None:
    """``calls`` requests of ``scenario``, ``CONCURRENCY`` in flight at once."""
    if prefix == "/notes":
        create: dict[str, Any] = {"text": "load test note", "completed": False}
    else:
        create = {"title": "load test note", "body": "written by the counter"}
    body = json.dumps(create).encode()
    issued = 0

    async def worker() -> None:
        nonlocal issued
        while issued < calls:
            issued += 1
            if scenario == "get":
                await client.call("GET", f"{prefix}/{ids[issued % len(ids)]}")
            elif scenario == "list":
                await client.call("GET", f"{prefix}?limit=20")
            else:
                await client.call("POST", prefix, body, b"application/json")

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))


async def main(target: str, scenario: str, calls: int, factory: bool) -> None:
    module_name, _, attribute = target.partition(":")
    app = getattr(importlib.import_module(module_name), attribute)
    if factory:
        app = app()
    client = Client(app)
    async with app.router.lifespan_context(app):
        if factory:
            prefix, ids = await prepare_service(client)
        else:
            prefix, ids = "/notes", list(range(1, 1001))
        await load(client, scenario, calls, prefix, ids)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent / "apps"))
    if len(sys.argv) < 4 or sys.argv[2] not in ("get", "list", "create"):
        raise SystemExit(__doc__)
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), "--factory" in sys.argv[4:]))
