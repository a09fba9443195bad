"""The tutorial's routes on bare Starlette with the raw driver and orjson: no FastAPI at all.

The ceiling without FastAPI: no validation models, responses serialized by orjson.
``BENCH_DSN`` as in ``raw_fastapi``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from rawdb import open_store
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

store: Any = None


def _json(content: Any, status_code: int = 200) -> Response:
    return Response(orjson.dumps(content), status_code, media_type="application/json")


async def read_notes(request: Request) -> Response:
    limit = int(request.query_params.get("limit", "20"))
    rows = await store.list_notes(limit)
    return _json([{"id": i, "text": t, "completed": bool(c)} for i, t, c in rows])


async def read_note(request: Request) -> Response:
    row = await store.get_note(int(request.path_params["note_id"]))
    if row is None:
        return _json({"detail": "Note not found"}, 404)
    return _json({"id": row[0], "text": row[1], "completed": bool(row[2])})


async def create_note(request: Request) -> Response:
    data = orjson.loads(await request.body())
    text, completed = data["text"], data["completed"]
    if not isinstance(text, str) or not isinstance(completed, bool):
        return _json({"detail": "text must be a string and completed a boolean"}, 422)
    note_id = await store.create_note(text, completed)
    return _json({"id": note_id, "text": text, "completed": completed})


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    global store
    store = await open_store(os.environ["BENCH_DSN"])
    try:
        yield
    finally:
        await store.close()


app = Starlette(
    routes=[
        Route("/notes", read_notes, methods=["GET"]),
        Route("/notes", create_note, methods=["POST"]),
        Route("/notes/{note_id:int}", read_note, methods=["GET"]),
    ],
    lifespan=lifespan,
)
