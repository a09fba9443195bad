"""The tutorial's routes on SQLAlchemy 2 async Core (``AsyncEngine``), one connection per call.

``BENCH_DSN`` is a plain URL (``postgresql://`` or ``sqlite:///``); the async driver
(asyncpg or aiosqlite) is put into it here. The PostgreSQL pool holds 10 connections, like
the other contenders.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import sqlalchemy
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import create_async_engine

DSN = os.environ["BENCH_DSN"]
if DSN.startswith("postgresql://"):
    engine = create_async_engine(
        "postgresql+asyncpg://" + DSN.removeprefix("postgresql://"), pool_size=10, max_overflow=0
    )
else:
    engine = create_async_engine("sqlite+aiosqlite://" + DSN.removeprefix("sqlite://"))

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
    try:
        yield
    finally:
        await engine.dispose()


app = FastAPI(lifespan=lifespan)


@app.get("/notes", response_model=list[Note])
async def read_notes(limit: int = 20) -> Any:
    async with engine.connect() as conn:
        result = await conn.execute(notes.select().order_by(notes.c.id).limit(limit))
        return result.all()


@app.get("/notes/{note_id}", response_model=Note)
async def read_note(note_id: int) -> Any:
    async with engine.connect() as conn:
        row = (await conn.execute(notes.select().where(notes.c.id == note_id))).first()
    if row is None:
        raise HTTPException(status_code=404, detail="Note not found")
    return row


@app.post("/notes", response_model=Note)
async def create_note(note: NoteIn) -> Any:
    async with engine.begin() as conn:
        result = await conn.execute(
            notes.insert().values(text=note.text, completed=note.completed).returning(notes.c.id)
        )
        note_id = result.scalar_one()
    return {**note.model_dump(), "id": note_id}
