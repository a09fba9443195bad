"""The tutorial's routes on FastAPI with the raw driver: an asyncpg pool or one aiosqlite
connection. The ceiling for a FastAPI app: no query layer at all.

``BENCH_DSN`` is ``postgresql://...`` (asyncpg pool of 10) or ``sqlite:///<file>`` (one
shared aiosqlite connection, ``synchronous=normal``, writes committed one by one).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel
from rawdb import open_store


class NoteIn(BaseModel):
    text: str
    completed: bool


class Note(BaseModel):
    id: int
    text: str
    completed: bool


store: Any = None


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    global store
    store = await open_store(os.environ["BENCH_DSN"])
    try:
        yield
    finally:
        await store.close()


app = FastAPI(lifespan=lifespan)


@app.get("/notes", response_model=list[Note])
async def read_notes(limit: int = 20) -> Any:
    return [{"id": i, "text": t, "completed": bool(c)} for i, t, c in await store.list_notes(limit)]


@app.get("/notes/{note_id}", response_model=Note)
async def read_note(note_id: int) -> Any:
    row = await store.get_note(note_id)
    if row is None:
        raise HTTPException(status_code=404, detail="Note not found")
    return {"id": row[0], "text": row[1], "completed": bool(row[2])}


@app.post("/notes", response_model=Note)
async def create_note(note: NoteIn) -> Any:
    note_id = await store.create_note(note.text, note.completed)
    return {**note.model_dump(), "id": note_id}
