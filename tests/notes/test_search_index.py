"""SQLite's search queue: notes are indexed in batches, and a search still sees every one."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

import aiodatabases
from notes import Settings, create_app, search_index

from .conftest import TEST_SECRET
from .helpers import create_note
from .test_search import search_ids

WORDS = ["amber", "basalt", "cobalt", "dune", "ember", "fjord", "granite", "harbor"]


@pytest.fixture
def settings(notes_url: str) -> Settings:
    """The app's own background indexer stays still: each test decides when indexing runs."""
    return Settings(
        database_url=SecretStr(notes_url),
        jwt_secret=SecretStr(TEST_SECRET),
        search_index_interval=3600,
    )


@pytest.fixture
def sqlite_only(notes_url: str) -> str:
    if not notes_url.startswith("sqlite"):
        pytest.skip("the search queue exists on SQLite only; the others index as they write")
    return notes_url


def _file(url: str) -> str:
    return url.removeprefix("sqlite:///")


async def _indexed(database: aiodatabases.Database, word: str) -> set[int]:
    """The ids the FTS5 index holds for a word (without catching up first)."""
    rows = await database.fetch_all(
        "SELECT rowid FROM notes_fts WHERE notes_fts MATCH :q", {"q": f'"{word}"'}
    )
    return {row[0] for row in rows}


async def _reference(database: aiodatabases.Database, word: str) -> set[int]:
    """The ids of the notes whose title or body holds the word now."""
    rows = await database.fetch_all("SELECT id, title, body FROM notes")
    return {row[0] for row in rows if word in f"{row[1]} {row[2]}".split()}


async def _queued(database: aiodatabases.Database) -> set[int]:
    return {row[0] for row in await database.fetch_all("SELECT note_id FROM notes_fts_pending")}


async def _drained(database: aiodatabases.Database, seconds: float = 10) -> None:
    """Wait until the queue is empty (the background indexer took it), at most ``seconds``."""
    for _ in range(int(seconds / 0.01)):
        if not await search_index.pending(database):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{await search_index.pending(database)} notes still queued")


async def _check_invariant(database: aiodatabases.Database) -> None:
    """Each note is either queued or indexed under exactly its current words."""
    queued = await _queued(database)
    ids = {row[0] for row in await database.fetch_all("SELECT id FROM notes")}
    assert queued <= ids
    for word in WORDS:
        indexed = await _indexed(database, word)
        assert not indexed & queued, word
        assert indexed == await _reference(database, word) - queued, word


async def test_random_writes_keep_queue_and_index_exact(
    sqlite_only: str, database: aiodatabases.Database
) -> None:
    """Inserts, renames, id changes, deletes and batches in any order: never a stale entry."""
    rng = random.Random(20261130)

    def text(count: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(count))

    user = await database.execute(
        "INSERT INTO users (email, password_hash, created_at) VALUES ('q@example.org', 'x', :t)",
        {"t": "2026-11-30 00:00:00"},
    )
    insert = (
        "INSERT INTO notes (title, body, completed, version, created_at, updated_at, owner_id) "
        "VALUES (:title, :body, 0, 1, :t, :t, :owner)"
    )
    for step in range(400):
        ids = [row[0] for row in await database.fetch_all("SELECT id FROM notes")]
        action = rng.random()
        if action < 0.35 or not ids:
            owner = user if rng.random() < 0.5 else None
            values = {"title": text(2), "body": text(4), "t": "2026-11-30 00:00:00"}
            await database.execute(insert, {**values, "owner": owner})
        elif action < 0.5:
            changes = {"id": rng.choice(ids), "title": text(2)}
            await database.execute("UPDATE notes SET title = :title WHERE id = :id", changes)
        elif action < 0.6:
            changes = {"id": rng.choice(ids), "body": text(3)}
            await database.execute("UPDATE notes SET body = :body WHERE id = :id", changes)
        elif action < 0.65:
            # Not a search column: the note stays where it was (queued or indexed).
            await database.execute(
                "UPDATE notes SET completed = 1 WHERE id = :id", {"id": rng.choice(ids)}
            )
        elif action < 0.7:
            fresh = max(ids) + 1000 + step
            await database.execute(
                "UPDATE notes SET id = :new WHERE id = :id", {"id": rng.choice(ids), "new": fresh}
            )
        elif action < 0.85:
            await database.execute("DELETE FROM notes WHERE id = :id", {"id": rng.choice(ids)})
        else:
            await search_index.index_pending(database, batch=rng.randint(1, 7))
            assert await _queued(database) == set()
        await _check_invariant(database)

    await database.execute("DELETE FROM users WHERE id = :id", {"id": user})  # cascades
    await _check_invariant(database)
    await search_index.catch_up(database)
    assert await search_index.pending(database) == 0
    await _check_invariant(database)
    for word in WORDS:
        assert await _indexed(database, word) == await _reference(database, word)


async def test_a_search_finds_the_note_created_just_before_it(
    sqlite_only: str, client: httpx.AsyncClient, database: aiodatabases.Database
) -> None:
    """Created notes wait in the queue; the next search indexes them before it runs."""
    first = await create_note(client, title="quince marmalade")
    second = await create_note(client, title="quince jelly", body="marmalade too")
    assert await _queued(database) >= {first["id"], second["id"]}
    assert set(await search_ids(client, "marmalade")) == {first["id"], second["id"]}
    assert await search_index.pending(database) == 0
    await client.patch(f"/api/notes/{first['id']}", json={"title": "quince paste"})
    assert await _queued(database) == {first["id"]}
    assert await search_ids(client, "marmalade") == [second["id"]]
    assert await search_ids(client, "paste") == [first["id"]]


async def test_the_background_indexer_empties_the_queue(
    sqlite_only: str, database: aiodatabases.Database
) -> None:
    """Started, it indexes what is queued within a few intervals; stopped, it finishes the queue."""
    insert = (
        "INSERT INTO notes (title, body, completed, version, created_at, updated_at) "
        "VALUES (:title, 'b', 0, 1, '2026-11-30', '2026-11-30')"
    )
    indexer = search_index.SearchIndexer(database, interval=0.01)
    indexer.start()
    try:
        await database.execute_many(insert, [{"title": f"ember {i}"} for i in range(1200)])
        await _drained(database)
        assert len(await _indexed(database, "ember")) == 1200
        await database.execute(insert, {"title": "ember last"})
    finally:
        await indexer.stop()
    assert await search_index.pending(database) == 0
    assert len(await _indexed(database, "ember")) == 1201


async def test_notes_queued_by_a_stopped_process_are_searchable_after_a_restart(
    sqlite_only: str, tmp_path: Path
) -> None:
    """The queue is in the database: what a crash left queued is found by the next process."""
    url = sqlite_only
    with sqlite3.connect(_file(url)) as raw:  # another writer: no service, no indexer
        raw.executemany(
            "INSERT INTO notes (title, body, completed, version, created_at, updated_at) "
            "VALUES (?, 'left behind', 0, 1, '2026-11-30', '2026-11-30')",
            [(f"granite {i}",) for i in range(3)],
        )
        assert raw.execute("SELECT COUNT(*) FROM notes_fts_pending").fetchone() == (3,)
    app: FastAPI = create_app(
        Settings(database_url=SecretStr(url), jwt_secret=SecretStr(TEST_SECRET))
    )
    async with app.router.lifespan_context(app):
        database: aiodatabases.Database = app.state.database
        await _drained(database)
        assert len(await _indexed(database, "granite")) == 3


def test_bad_settings_of_the_indexer_are_refused() -> None:
    database = aiodatabases.Database("sqlite:///:memory:")
    with pytest.raises(ValueError, match="interval"):
        search_index.SearchIndexer(database, interval=0)
    with pytest.raises(ValueError, match="batch"):
        asyncio.run(search_index.index_pending(database, batch=0))
