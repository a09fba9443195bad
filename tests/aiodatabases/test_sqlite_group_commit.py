"""SQLite group commit: concurrent writes made with no connection held commit together, and
each caller still sees exactly what its own statement did, its own error included."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from typing import Any

import pytest
from sqlalchemy import select

import aiodatabases
from aiodatabases import Database
from aiodatabases.backends import sqlite as sqlite_backend

from .helpers import assert_a_conflict_in_a_group_fails_alone, count_rows
from .tables import notes, users


@pytest.fixture
def groups(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of the groups run (committed or not), in order."""
    sizes: list[int] = []
    run_group = sqlite_backend.SQLiteConnection.run_group

    def spy(self: sqlite_backend.SQLiteConnection, members: Sequence[Any]) -> Any:
        sizes.append(len(members))
        return run_group(self, members)

    monkeypatch.setattr(sqlite_backend.SQLiteConnection, "run_group", spy)
    return sizes


def _note(text: str) -> dict[str, object]:
    return {"text": text, "completed": False}


async def test_concurrent_inserts_commit_together_and_each_gets_its_row_id(
    sqlite_database: Database, groups: list[int]
) -> None:
    """50 tasks inserting at once: a group forms, and every caller gets the id of its row."""
    ids = await asyncio.gather(
        *(sqlite_database.execute(notes.insert(), _note(f"note {i}")) for i in range(50))
    )
    assert max(groups, default=0) > 1
    assert sum(groups) <= 50
    rows = await sqlite_database.fetch_all(select(notes.c.id, notes.c.text))
    assert {row["id"]: row["text"] for row in rows} == {
        row_id: f"note {i}" for i, row_id in enumerate(ids)
    }


async def test_a_failing_statement_fails_alone(
    sqlite_database: Database, groups: list[int]
) -> None:
    """A unique violation in a group: that caller gets the IntegrityError, the others their rows."""
    await assert_a_conflict_in_a_group_fails_alone(
        sqlite_database, users, groups, sqlite3.IntegrityError
    )


async def test_updates_deletes_and_returning_get_their_own_outcome(
    sqlite_database: Database, groups: list[int]
) -> None:
    """Row counts of updates and deletes and RETURNING values are each statement's own."""
    for i in range(6):
        await sqlite_database.execute(notes.insert(), _note(f"n{i % 3}"))
    results = await asyncio.gather(
        sqlite_database.execute(notes.update().where(notes.c.text == "n0").values(completed=True)),
        sqlite_database.execute(notes.delete().where(notes.c.text == "n1")),
        sqlite_database.execute(notes.update().where(notes.c.text == "none").values(text="x")),
        sqlite_database.execute(
            notes.insert().values(text="returned", completed=False).returning(notes.c.text)
        ),
        sqlite_database.execute(
            "UPDATE notes SET text = :new WHERE text = :old", {"new": "n2b", "old": "n2"}
        ),
    )
    assert max(groups, default=0) > 1
    assert list(results) == [2, 2, 0, "returned", 2]
    assert await count_rows(sqlite_database, notes) == 5


async def test_a_caller_cancelled_before_the_group_runs_writes_nothing(
    sqlite_database: Database, groups: list[int]
) -> None:
    """A write cancelled while it waits for its group is left out of it."""
    tasks = [
        asyncio.create_task(sqlite_database.execute(notes.insert(), _note(f"note {i}")))
        for i in range(8)
    ]
    await asyncio.sleep(0)  # every task has run up to its wait for the group
    tasks[3].cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[3], asyncio.CancelledError)
    assert max(groups, default=0) > 1
    texts = {row["text"] for row in await sqlite_database.fetch_all(select(notes.c.text))}
    assert texts == {f"note {i}" for i in range(8) if i != 3}


async def test_a_constraint_checked_at_commit_fails_only_its_statement(
    sqlite_url: str, groups: list[int]
) -> None:
    """A deferred foreign key violated by one member: the group's COMMIT fails, everything is
    run again alone, and only the violating caller gets the error."""
    async with Database(sqlite_url, foreign_keys=True) as database:
        await database.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        await database.execute(
            "CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER "
            "REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)"
        )
        await database.execute("INSERT INTO parent (id) VALUES (1)")
        parents = [1, 1, 2, 1, 1]
        results = await asyncio.gather(
            *(
                database.execute("INSERT INTO child (parent_id) VALUES (:p)", {"p": p})
                for p in parents
            ),
            return_exceptions=True,
        )
        assert max(groups, default=0) > 1
        assert isinstance(results[2], aiodatabases.IntegrityError)
        assert all(isinstance(r, int) for i, r in enumerate(results) if i != 2)
        assert await database.fetch_val("SELECT count(*) FROM child") == 4


@pytest.mark.timeout(30)
async def test_a_group_blocked_by_another_process_runs_each_write_after_the_lock(
    sqlite_database: Database, sqlite_url: str, groups: list[int]
) -> None:
    """Another connection holds the write lock: the group cannot begin, each write waits for the
    lock on its own (busy timeout) and succeeds once it is released."""
    other = sqlite3.connect(sqlite_url.split("sqlite:///", 1)[1], isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        writes = asyncio.gather(
            *(sqlite_database.execute(notes.insert(), _note(f"note {i}")) for i in range(6))
        )
        await asyncio.sleep(0.3)
        assert not writes.done()
        other.execute("COMMIT")
        ids = await asyncio.wait_for(writes, timeout=10)
    finally:
        other.close()
    assert max(groups, default=0) > 1
    assert len(set(ids)) == 6
    assert await count_rows(sqlite_database, notes) == 6


async def test_a_slow_member_sends_the_group_back_to_single_statements(
    sqlite_database: Database, groups: list[int], sqlite_rows_per_second: float
) -> None:
    """A member running past the loop's budget aborts the group; each statement then runs on
    its own (the slow one on a worker thread) and all succeed."""
    many = max(int(sqlite_rows_per_second * 0.2), 1000)
    slow = (
        "INSERT INTO notes (text, completed) SELECT 'counted ' || count(*), 0 FROM ("
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < :n) "
        "SELECT x FROM c)"
    )
    results = await asyncio.gather(
        sqlite_database.execute(notes.insert(), _note("first")),
        sqlite_database.execute(notes.insert(), _note("second")),
        sqlite_database.execute(slow, {"n": many}),
        sqlite_database.execute(notes.insert(), _note("third")),
    )
    assert max(groups, default=0) > 1
    assert all(isinstance(r, int) for r in results)
    texts = {row["text"] for row in await sqlite_database.fetch_all(select(notes.c.text))}
    assert texts == {"first", "second", "third", f"counted {many}"}


async def test_a_lone_writer_never_waits_for_a_group(
    sqlite_database: Database, groups: list[int]
) -> None:
    """One task writing in a loop runs every statement at once, never in a group."""
    for i in range(200):
        await sqlite_database.execute(notes.insert(), _note(f"note {i}"))
    assert groups == []
    assert await count_rows(sqlite_database, notes) == 200


async def test_writes_in_a_held_connection_or_transaction_are_never_grouped(
    sqlite_database: Database, groups: list[int]
) -> None:
    """Only writes made with no connection held may be grouped."""

    async def held(i: int) -> None:
        async with sqlite_database.connection() as connection:
            await connection.execute(notes.insert(), _note(f"held {i}"))

    async def in_transaction(i: int) -> None:
        async with sqlite_database.transaction():
            await sqlite_database.execute(notes.insert(), _note(f"transaction {i}"))

    await asyncio.gather(*(held(i) for i in range(10)), *(in_transaction(i) for i in range(10)))
    assert groups == []
    assert await count_rows(sqlite_database, notes) == 20


async def test_group_commit_can_be_turned_off(sqlite_url: str, groups: list[int]) -> None:
    """``group_commit=false`` in the URL: concurrent writes commit one by one."""
    async with Database(sqlite_url + "?group_commit=false") as database:
        await database.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)")
        ids = await asyncio.gather(
            *(database.execute("INSERT INTO t (v) VALUES (:v)", {"v": i}) for i in range(20))
        )
        assert len(set(ids)) == 20
    assert groups == []


async def test_memory_databases_do_not_group(groups: list[int]) -> None:
    """A memory database (one connection, no WAL) runs concurrent writes one by one."""
    async with Database("sqlite://") as database:
        await database.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)")
        await asyncio.gather(
            *(database.execute("INSERT INTO t (v) VALUES (:v)", {"v": i}) for i in range(20))
        )
        assert await database.fetch_val("SELECT count(*) FROM t") == 20
    assert groups == []
