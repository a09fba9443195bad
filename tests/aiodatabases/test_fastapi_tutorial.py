"""FastAPI's "Async SQL (Relational) Databases" tutorial, run with aiodatabases as databases."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import sqlalchemy
from fastapi import FastAPI
from pydantic import BaseModel
from sqlalchemy.schema import CreateTable, DropTable

import aiodatabases as databases

metadata = sqlalchemy.MetaData()

notes = sqlalchemy.Table(
    "notes",
    metadata,
    sqlalchemy.Column("id", sqlalchemy.Integer, primary_key=True),
    sqlalchemy.Column("text", sqlalchemy.String),
    sqlalchemy.Column("completed", sqlalchemy.Boolean),
)


class NoteIn(BaseModel):
    """A note as posted by the client."""

    text: str
    completed: bool


class Note(BaseModel):
    """A stored note."""

    id: int
    text: str
    completed: bool


def create_app(database_url: str) -> FastAPI:
    """Build the tutorial app around one Database, connected by the lifespan."""
    database = databases.Database(database_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await database.connect()
        await database.execute(DropTable(notes, if_exists=True))
        await database.execute(CreateTable(notes))
        yield
        await database.execute(DropTable(notes, if_exists=True))
        await database.disconnect()

    app = FastAPI(lifespan=lifespan)

    @app.get("/notes/", response_model=list[Note])
    async def read_notes() -> Any:
        query = notes.select()
        return await database.fetch_all(query)

    @app.post("/notes/", response_model=Note)
    async def create_note(note: NoteIn) -> Any:
        query = notes.insert().values(text=note.text, completed=note.completed)
        last_record_id = await database.execute(query)
        return {**note.model_dump(), "id": last_record_id}

    # No return annotation, as in applications: FastAPI then has no response model at all
    # and must serialize the records themselves.
    @app.get("/raw/notes/{note_id}")
    async def read_note_without_model(note_id: int):  # type: ignore[no-untyped-def]
        return await database.fetch_one(notes.select().where(notes.c.id == note_id))

    @app.get("/raw/notes/")
    async def read_notes_without_model():  # type: ignore[no-untyped-def]
        return await database.fetch_all(notes.select().order_by(notes.c.id))

    @app.get("/any/notes/")
    async def read_notes_annotated_any() -> Any:
        return await database.fetch_all(notes.select().order_by(notes.c.id))

    return app


@pytest.fixture
async def client(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client talking to the tutorial app in-process, lifespan included."""
    app = create_app(database_url)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http


async def test_read_notes_is_empty_at_first(client: httpx.AsyncClient) -> None:
    """GET /notes/ on a fresh table returns an empty JSON list."""
    response = await client.get("/notes/")
    assert response.status_code == 200
    assert response.json() == []


async def test_create_note_returns_it_with_its_new_id(client: httpx.AsyncClient) -> None:
    """POST /notes/ returns the note with the id the database gave it."""
    response = await client.post("/notes/", json={"text": "buy milk", "completed": False})
    assert response.status_code == 200
    assert response.json() == {"id": 1, "text": "buy milk", "completed": False}
    second = await client.post("/notes/", json={"text": "walk dog", "completed": True})
    assert second.json() == {"id": 2, "text": "walk dog", "completed": True}


async def test_read_notes_returns_what_was_posted(client: httpx.AsyncClient) -> None:
    """GET /notes/ returns every posted note, serialized through response_model=list[Note]."""
    await client.post("/notes/", json={"text": "buy milk", "completed": False})
    await client.post("/notes/", json={"text": "walk dog", "completed": True})
    response = await client.get("/notes/")
    assert response.status_code == 200
    assert sorted(response.json(), key=lambda note: note["id"]) == [
        {"id": 1, "text": "buy milk", "completed": False},
        {"id": 2, "text": "walk dog", "completed": True},
    ]


async def test_invalid_note_is_rejected_by_validation(client: httpx.AsyncClient) -> None:
    """A POST missing 'completed' gets FastAPI's 422 and stores nothing."""
    response = await client.post("/notes/", json={"text": "incomplete"})
    assert response.status_code == 422
    assert (await client.get("/notes/")).json() == []


async def test_record_returned_without_response_model_is_a_json_object(
    client: httpx.AsyncClient,
) -> None:
    """A route returning a Record with no response_model serializes it as a JSON object."""
    await client.post("/notes/", json={"text": "buy milk", "completed": True})
    response = await client.get("/raw/notes/1")
    assert response.status_code == 200
    assert response.json() == {"id": 1, "text": "buy milk", "completed": True}


async def test_list_of_records_without_response_model_is_a_list_of_objects(
    client: httpx.AsyncClient,
) -> None:
    """A route returning fetch_all() with no response_model serializes a list of objects."""
    await client.post("/notes/", json={"text": "a", "completed": False})
    await client.post("/notes/", json={"text": "b", "completed": True})
    response = await client.get("/raw/notes/")
    assert response.json() == [
        {"id": 1, "text": "a", "completed": False},
        {"id": 2, "text": "b", "completed": True},
    ]


async def test_records_from_a_route_annotated_any_are_json_objects(
    client: httpx.AsyncClient,
) -> None:
    """A route annotated -> Any (serialized by pydantic-core) sends records as JSON objects."""
    await client.post("/notes/", json={"text": "a", "completed": False})
    response = await client.get("/any/notes/")
    assert response.status_code == 200
    assert response.json() == [{"id": 1, "text": "a", "completed": False}]


async def test_missing_record_without_response_model_is_null(client: httpx.AsyncClient) -> None:
    """fetch_one() of no row returns None, which FastAPI sends as JSON null."""
    response = await client.get("/raw/notes/42")
    assert response.status_code == 200
    assert response.json() is None


@pytest.mark.timeout(60)
async def test_concurrent_requests_are_served(client: httpx.AsyncClient) -> None:
    """Fifty concurrent POSTs all succeed with distinct ids and all show up in GET."""
    responses = await asyncio.gather(
        *(client.post("/notes/", json={"text": f"n{i}", "completed": False}) for i in range(50))
    )
    assert all(response.status_code == 200 for response in responses)
    assert sorted(response.json()["id"] for response in responses) == list(range(1, 51))
    assert len((await client.get("/notes/")).json()) == 50
