"""POST /api/notes/batch: up to 100 notes with their tags, all or nothing."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

import aiodatabases
from notes.repository import NotesRepository
from notes.schemas import NoteIn

from .conftest import add_user
from .helpers import assert_problem


async def count_rows(database: aiodatabases.Database, table: str) -> int:
    """Count the rows of a table."""
    count: int = await database.fetch_val(sa.select(sa.func.count()).select_from(sa.table(table)))
    return count


async def test_batch_creates_every_note_with_its_tags(client: httpx.AsyncClient) -> None:
    """A batch of three notes answers 201 with the three notes, in order, tags included."""
    batch = [{"title": f"n{i}", "tags": [f"t{i}", "all"]} for i in range(3)]
    response = await client.post("/api/notes/batch", json={"notes": batch})
    assert response.status_code == 201
    created = response.json()
    assert [(note["title"], note["tags"]) for note in created] == [
        (item["title"], item["tags"]) for item in batch
    ]
    assert len({note["id"] for note in created}) == 3
    tagged = (await client.get("/api/notes", params={"tag": "all"})).json()["items"]
    assert len(tagged) == 3


async def test_batch_of_100_is_accepted_and_101_refused(client: httpx.AsyncClient) -> None:
    """100 notes is the largest batch; 101 is a 422 problem and writes nothing."""
    refused = await client.post(
        "/api/notes/batch", json={"notes": [{"title": f"n{i}"} for i in range(101)]}
    )
    assert_problem(refused, 422)
    assert (await client.get("/api/notes")).json()["items"] == []
    accepted = await client.post(
        "/api/notes/batch", json={"notes": [{"title": f"n{i}"} for i in range(100)]}
    )
    assert accepted.status_code == 201
    assert len(accepted.json()) == 100


async def test_empty_batch_is_a_422_problem(client: httpx.AsyncClient) -> None:
    """A batch with no notes is refused."""
    assert_problem(await client.post("/api/notes/batch", json={"notes": []}), 422)


@pytest.mark.parametrize("bad", [{"title": ""}, {"title": "ok", "tags": ["x", ""]}])
async def test_batch_with_one_invalid_note_writes_nothing(
    client: httpx.AsyncClient, database: aiodatabases.Database, bad: dict[str, Any]
) -> None:
    """One invalid note among valid ones: 422 naming its index, and no note or tag stored."""
    batch: list[dict[str, Any]] = [{"title": "good", "tags": ["t"]}] * 3 + [bad]
    problem = assert_problem(await client.post("/api/notes/batch", json={"notes": batch}), 422)
    assert problem["errors"][0]["loc"][:3] == ["body", "notes", "3"]
    assert await count_rows(database, "notes") == 0
    assert await count_rows(database, "note_tags") == 0


async def test_batch_failing_in_the_database_midway_writes_nothing(
    app: FastAPI, database: aiodatabases.Database
) -> None:
    """When the database refuses the third note, the first two and their tags are undone."""
    good = NoteIn(title="good", tags=["a", "b"])
    # Built without validation to reach the database: title NULL violates NOT NULL.
    broken = NoteIn.model_construct(title=None, body="", completed=False, tags=["c"])
    owner_id, _ = await add_user(app, "batch@example.org")
    repository = NotesRepository(database, owner_id=owner_id)
    with pytest.raises(aiodatabases.IntegrityError):
        await repository.create_many([good, good, broken, good])
    assert await count_rows(database, "notes") == 0
    assert await count_rows(database, "note_tags") == 0
