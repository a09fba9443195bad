"""Database.run_in_transaction: a whole transaction runs again when the server asks for it."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from sqlalchemy import insert, select, update

from aiodatabases import (
    ConfigurationError,
    Connection,
    Database,
    DatabaseError,
    IntegrityError,
    OperationalError,
)

from .helpers import count_rows
from .tables import counters, users

pytestmark = pytest.mark.timeout(60)


def forced_retryable_sql(database: Database) -> str:
    """SQL that makes the server raise a retryable error, as a conflicting transaction would."""
    dialect = database.url.dialect
    if dialect == "postgresql":
        return (
            "DO $$ BEGIN RAISE EXCEPTION 'forced serialization failure' "
            "USING ERRCODE = 'serialization_failure'; END $$"
        )
    if dialect == "mysql":
        return "SIGNAL SQLSTATE '40001' SET MYSQL_ERRNO = 1213, MESSAGE_TEXT = 'forced deadlock'"
    pytest.skip("SQLite cannot raise an error of a chosen code from SQL")


def only_servers(database: Database) -> None:
    """Skip on SQLite, whose writers queue and so never deadlock."""
    if database.url.dialect == "sqlite":
        pytest.skip("SQLite writers take turns; there is no deadlock to provoke")


async def test_run_in_transaction_commits_and_returns_the_function_result(
    database: Database,
) -> None:
    """The function's writes are committed and its return value is handed back."""

    async def create(connection: Connection) -> str:
        await connection.execute(insert(users), {"id": 1, "name": "ada"})
        return "created"

    assert await database.run_in_transaction(create) == "created"
    assert await database.fetch_val(select(users.c.name).where(users.c.id == 1)) == "ada"


async def test_a_non_retryable_error_rolls_back_and_runs_once(database: Database) -> None:
    """A unique violation is not a reason to retry: one call, nothing written, error raised."""
    await database.execute(insert(users), {"id": 1, "name": "ada"})
    calls = 0

    async def clash(connection: Connection) -> None:
        nonlocal calls
        calls += 1
        await connection.execute(insert(users), {"id": 2, "name": "bob"})
        await connection.execute(insert(users), {"id": 1, "name": "again"})

    with pytest.raises(IntegrityError) as caught:
        await database.run_in_transaction(clash)
    assert not caught.value.retryable
    assert calls == 1
    assert await count_rows(database, users) == 1


async def test_a_retryable_error_runs_the_whole_function_again(database: Database) -> None:
    """The first attempt's write is rolled back with it; the second attempt's is kept."""
    sql = forced_retryable_sql(database)
    calls = 0

    async def flaky(connection: Connection) -> int:
        nonlocal calls
        calls += 1
        await connection.execute(insert(users), {"id": calls, "name": f"attempt {calls}"})
        if calls == 1:
            await connection.execute(sql)
        return calls

    assert await database.run_in_transaction(flaky, backoff=0.001) == 2
    names = [row["name"] for row in await database.fetch_all(select(users.c.name))]
    assert names == ["attempt 2"]


async def test_retryable_errors_propagate_once_the_attempts_are_used_up(
    database: Database,
) -> None:
    """After `attempts` runs the last retryable error reaches the caller; nothing is kept."""
    sql = forced_retryable_sql(database)
    calls = 0

    async def always_conflicts(connection: Connection) -> None:
        nonlocal calls
        calls += 1
        await connection.execute(insert(users), {"id": calls, "name": "x"})
        await connection.execute(sql)

    with pytest.raises(OperationalError) as caught:
        await database.run_in_transaction(always_conflicts, attempts=3, backoff=0.001)
    assert caught.value.retryable
    assert caught.value.sqlstate == "40001"
    assert calls == 3
    assert await count_rows(database, users) == 0
    assert database.pool_stats().in_use == 0


async def test_inside_an_open_transaction_it_runs_once_and_lets_the_error_through(
    database: Database,
) -> None:
    """Only the outermost transaction can be retried, so a nested call does not try."""
    sql = forced_retryable_sql(database)
    calls = 0

    async def conflicts(connection: Connection) -> None:
        nonlocal calls
        calls += 1
        await connection.execute(sql)

    with pytest.raises(DatabaseError) as caught:
        async with database.transaction():
            await database.run_in_transaction(conflicts, backoff=0.001)
    assert caught.value.retryable
    assert calls == 1


async def test_deadlocked_transactions_both_finish_under_the_retry_helper(
    database: Database,
) -> None:
    """Two transactions locking two rows in opposite orders: the victim runs again."""
    only_servers(database)
    await database.execute_many(insert(counters), [{"id": 1, "value": 0}, {"id": 2, "value": 0}])
    both_locked_first = asyncio.Barrier(2)
    calls = 0

    def transfer(first: int, second: int) -> Callable[[Connection], Awaitable[None]]:
        async def body(connection: Connection) -> None:
            nonlocal calls
            calls += 1
            for index, key in enumerate((first, second)):
                await connection.execute(
                    update(counters).where(counters.c.id == key).values(value=counters.c.value + 1)
                )
                if index == 0 and calls <= 2:
                    await both_locked_first.wait()

        return body

    await asyncio.wait_for(
        asyncio.gather(
            database.run_in_transaction(transfer(1, 2), backoff=0.01),
            database.run_in_transaction(transfer(2, 1), backoff=0.01),
        ),
        timeout=30,
    )
    rows = await database.fetch_all(select(counters.c.value).order_by(counters.c.id))
    assert [row["value"] for row in rows] == [2, 2]
    assert calls == 3, "exactly one of the two should have been the deadlock victim"


async def test_bad_settings_are_refused_before_the_function_runs(database: Database) -> None:
    """attempts below 1, a negative delay and an unknown isolation level raise at once."""
    called = False

    async def body(connection: Connection) -> None:
        nonlocal called
        called = True

    with pytest.raises(ConfigurationError, match="attempts"):
        await database.run_in_transaction(body, attempts=0)
    with pytest.raises(ConfigurationError, match="backoff"):
        await database.run_in_transaction(body, backoff=-1)
    with pytest.raises(ConfigurationError, match="isolation"):
        await database.run_in_transaction(body, isolation="eventual")
    assert not called


async def test_a_sqlite_file_locked_by_another_process_is_retried_until_free(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """SQLITE_BUSY past the busy timeout is retryable: the write lands once the lock is gone."""
    path = tmp_path / "busy.db"
    setup = sqlite3.connect(path)
    setup.execute("PRAGMA journal_mode=wal")
    setup.execute("CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
    setup.execute("INSERT INTO counter VALUES (1, 0)")
    setup.commit()
    setup.close()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process's writer holds the lock

    async def release_later() -> None:
        await asyncio.sleep(0.5)
        other.execute("COMMIT")

    async def bump(connection: Connection) -> None:
        await connection.execute("UPDATE counter SET n = n + 1 WHERE id = 1")

    caplog.set_level(logging.INFO, logger="aiodatabases")
    async with Database(f"sqlite:///{path}?timeout=0.05") as database:
        releaser = asyncio.create_task(release_later())
        await database.run_in_transaction(bump, attempts=50, backoff=0.05, max_backoff=0.1)
        await releaser
        assert await database.fetch_val("SELECT n FROM counter WHERE id = 1") == 1
    other.close()
    assert any("retryable" in record.getMessage() for record in caplog.records)
