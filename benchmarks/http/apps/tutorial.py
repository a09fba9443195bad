"""FastAPI's "Async SQL (Relational) Databases" tutorial app, on databases 0.9 or aiodatabases.

The same module serves both contenders: ``BENCH_LIBRARY=databases`` imports encode's
``databases`` 0.9, ``BENCH_LIBRARY=aiodatabases`` imports this repository's drop-in successor
under the same name. ``BENCH_DSN`` is the database URL. Routes: ``GET /notes/{id}``,
``GET /notes?limit=20`` (ordered by id) and ``POST /notes``.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import sqlalchemy
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

databases: Any = importlib.import_module(os.environ.get("BENCH_LIBRARY", "aiodatabases"))

DATABASE_URL = os.environ["BENCH_DSN"]

database = databases.Database(DATABASE_URL)

metadata = sqlalchemy.MetaData()

notes = sqlalchemy.Table(
    "notes",
    metadata,
    sqlalchemy.Column("id", sqlalchemy.Integer, primary_key=True),
    sqlalchemy.Column("text", sqlalchemy.String(200)),
    sqlalchemy.Column("completed", sqlalchemy.Boolean),
)


class NoteIn(BaseModel):
    text: str
    completed: bool


class Note(BaseModel):
    id: int
    text: str
    completed: bool


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    await database.connect()
    try:
        yield
    finally:
        await database.disconnect()


app = FastAPI(lifespan=lifespan)


@app.get("/notes", response_model=list[Note])
async def read_notes(limit: int = 20) -> Any:
    query = notes.select().order_by(notes.c.id).limit(limit)
    return await database.fetch_all(query)


@app.get("/notes/{note_id}", response_model=Note)
async def read_note(note_id: int) -> Any:
    query = notes.select().where(notes.c.id == note_id)
    row = await database.fetch_one(query)
    if row is None:
        raise HTTPException(status_code=404, detail="Note not found")
    return row


@app.post("/notes", response_model=Note)
async def create_note(note: NoteIn) -> Any:
    query = notes.insert().values(text=note.text, completed=note.completed)
    last_record_id = await database.execute(query)
    return {**note.model_dump(), "id": last_record_id}
