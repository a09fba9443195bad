"""PostgreSQL group commit: concurrent writes with RETURNING made with no connection held run in
one pipelined call and one commit; each caller still sees what its own statement did."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information
import pytest
from sqlalchemy import select

import aiodatabases
from aiodatabases import Database
from aiodatabases.backends import asyncpg as asyncpg_backend

from ..conftest import require_reachable
from .conftest import create_tables, drop_tables
from .helpers import assert_a_conflict_in_a_group_fails_alone, count_rows
from .tables import notes, users
from .test_postgresql import _PG_URLS
from .test_postgresql import pg as pg  # the fixture: a Database with fresh tables
from .test_postgresql import pg_url as pg_url

pytestmark = pytest.mark.skipif(
    not _PG_URLS, reason="no postgresql:// URL in AIODATABASES_TEST_URLS"
)


@pytest.fixture
def groups(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of the groups sent (committed or not), in order."""
    sizes: list[int] = []
    run_group = asyncpg_backend.AsyncpgConnection.run_group

    async def spy(self: asyncpg_backend.AsyncpgConnection, members: Sequence[Any]) -> Any:
        sizes.append(len(members))
        return await run_group(self, members)

    monkeypatch.setattr(asyncpg_backend.AsyncpgConnection, "run_group", spy)
    return sizes


def _note(text: str) -> dict[str, object]:
    return {"text": text, "completed": False}


async def test_concurrent_inserts_share_a_round_trip_and_each_gets_its_key(
    pg: Database, groups: list[int]
) -> None:
    """50 tasks inserting at once: a group forms, and every caller gets the key of its row."""
    ids = await asyncio.gather(*(pg.execute(notes.insert(), _note(f"n{i}")) for i in range(50)))
    assert max(groups, default=0) > 1
    rows = await pg.fetch_all(select(notes.c.id, notes.c.text))
    assert {row["id"]: row["text"] for row in rows} == {
        row_id: f"n{i}" for i, row_id in enumerate(ids)
    }


async def test_tutorial_style_inserts_are_grouped(pg: Database, groups: list[int]) -> None:
    """``table.insert().values(...)`` built per call, as the FastAPI tutorial does."""
    ids = await asyncio.gather(
        *(pg.execute(notes.insert().values(text=f"t{i}", completed=True)) for i in range(20))
    )
    assert max(groups, default=0) > 1
    assert len(set(ids)) == 20
    assert all(isinstance(i, int) for i in ids)


async def test_a_failing_statement_fails_alone(pg: Database, groups: list[int]) -> None:
    """A unique violation in a group: that caller gets the IntegrityError, the others their rows."""
    await assert_a_conflict_in_a_group_fails_alone(pg, users, groups, asyncpg.UniqueViolationError)


async def test_a_value_the_driver_cannot_encode_fails_alone(
    pg: Database, groups: list[int]
) -> None:
    """A value asyncpg cannot send (a number for a text column): the group is rolled back by
    the driver, and only that caller gets the error."""
    names: list[object] = [f"user {i}" for i in range(6)]
    names[3] = 12345
    results = await asyncio.gather(
        *(pg.execute(users.insert(), {"name": name}) for name in names), return_exceptions=True
    )
    assert max(groups, default=0) > 1
    assert isinstance(results[3], aiodatabases.Error)
    assert all(isinstance(r, int) for i, r in enumerate(results) if i != 3)
    stored = {row["name"] for row in await pg.fetch_all(select(users.c.name))}
    assert stored == {name for i, name in enumerate(names) if i != 3}


async def test_updates_and_deletes_with_returning_get_their_own_rows(
    pg: Database, groups: list[int]
) -> None:
    """Each caller gets the first row its own statement returned, or None for none."""
    for i in range(6):
        await pg.execute(notes.insert(), _note(f"n{i % 3}"))
    update = "UPDATE notes SET completed = true WHERE text = :text RETURNING text"
    results = await asyncio.gather(
        pg.execute(update, {"text": "n0"}),
        pg.execute(update, {"text": "n1"}),
        pg.execute(update, {"text": "missing"}),
        pg.execute(update, {"text": "n2"}),
    )
    assert max(groups, default=0) > 1
    assert list(results) == ["n0", "n1", None, "n2"]
    done = await pg.fetch_val("SELECT count(*) FROM notes WHERE completed")
    assert done == 6


async def test_a_row_skipped_by_a_trigger_gives_none_to_its_caller_only(
    pg: Database, groups: list[int]
) -> None:
    """A BEFORE trigger that skips one row: its caller gets None, the others their keys."""
    await pg.execute(
        "CREATE FUNCTION skip_secret() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF NEW.text = 'secret' THEN RETURN NULL; END IF; RETURN NEW; END $$"
    )
    try:
        await pg.execute(
            "CREATE TRIGGER skip_secret BEFORE INSERT ON notes FOR EACH ROW "
            "EXECUTE FUNCTION skip_secret()"
        )
        texts = ["a", "b", "secret", "c"]
        ids = await asyncio.gather(*(pg.execute(notes.insert(), _note(t)) for t in texts))
        assert max(groups, default=0) > 1
        assert ids[2] is None
        rows = await pg.fetch_all(select(notes.c.id, notes.c.text))
        assert {row["text"]: row["id"] for row in rows} == {"a": ids[0], "b": ids[1], "c": ids[3]}
    finally:
        await pg.execute("DROP TRIGGER IF EXISTS skip_secret ON notes")
        await pg.execute("DROP FUNCTION IF EXISTS skip_secret()")


async def test_a_caller_cancelled_before_the_group_is_sent_writes_nothing(
    pg: Database, groups: list[int]
) -> None:
    """A write cancelled while it waits for its group is left out of it."""
    tasks = [asyncio.create_task(pg.execute(notes.insert(), _note(f"n{i}"))) for i in range(8)]
    await asyncio.sleep(0)
    tasks[3].cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[3], asyncio.CancelledError)
    assert max(groups, default=0) > 1
    texts = {row["text"] for row in await pg.fetch_all(select(notes.c.text))}
    assert texts == {f"n{i}" for i in range(8) if i != 3}


async def test_a_lone_writer_and_held_connections_are_never_grouped(
    pg: Database, groups: list[int]
) -> None:
    """One task writing in a loop, or tasks holding their connection, never form a group."""
    for i in range(50):
        await pg.execute(notes.insert(), _note(f"lone {i}"))

    async def held(i: int) -> None:
        async with pg.connection() as connection:
            await connection.execute(notes.insert(), _note(f"held {i}"))

    await asyncio.gather(*(held(i) for i in range(10)))
    assert groups == []
    assert await count_rows(pg, notes) == 60


async def test_group_commit_can_be_turned_off(groups: list[int]) -> None:
    """``group_commit=false``: concurrent writes run one by one."""
    url = _PG_URLS[0]
    require_reachable(url)
    separator = "&" if "?" in url else "?"
    async with Database(f"{url}{separator}group_commit=false") as database:
        await create_tables(database)
        try:
            ids = await asyncio.gather(
                *(database.execute(notes.insert(), _note(f"n{i}")) for i in range(20))
            )
            assert len(set(ids)) == 20
        finally:
            await drop_tables(database)
    assert groups == []


async def test_an_argument_the_driver_cannot_encode_leaves_no_lock_behind(pg: Database) -> None:
    """asyncpg refuses a value after the statement was parsed: the connection must not go
    back to the pool holding the parse's table lock, or a DROP elsewhere would wait for it."""
    url = _PG_URLS[0]
    async with pg.connection() as connection:
        with pytest.raises(aiodatabases.Error, match="invalid input"):
            await connection.execute(users.insert(), {"name": 12345})
    other = await asyncpg.connect(url)
    try:
        async with other.transaction():
            await other.execute("SET LOCAL lock_timeout = '2s'")
            await other.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
    finally:
        await other.close()
    assert await pg.execute(users.insert(), {"name": "after"}) is not None
