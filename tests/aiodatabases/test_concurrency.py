"""Tasks and connections: gather, per-task connections, iterate, child and sibling tasks."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import select

import aiodatabases
from aiodatabases import Database

from .helpers import Abort, SlowSql, count_rows, expect_abort, hold_connections
from .tables import counters, notes


def _note(text: str) -> dict[str, object]:
    return {"text": text, "completed": False}


@pytest.mark.timeout(30)
async def test_gather_of_100_queries_returns_each_result(database: Database) -> None:
    """asyncio.gather of 100 parameterised queries returns each query's own answer."""
    results = await asyncio.gather(
        *(database.fetch_val("SELECT :n * 2", {"n": n}) for n in range(100))
    )
    assert results == [n * 2 for n in range(100)]


@pytest.mark.timeout(30)
async def test_gather_of_100_inserts_stores_every_row(database: Database) -> None:
    """asyncio.gather of 100 inserts stores 100 rows with 100 distinct ids."""
    ids = await asyncio.gather(
        *(database.execute(notes.insert(), _note(f"n{n}")) for n in range(100))
    )
    assert sorted(ids) == list(range(1, 101))
    assert await count_rows(database, notes) == 100


@pytest.mark.timeout(30)
async def test_concurrent_tasks_get_separate_connections(database: Database) -> None:
    """Two tasks inside database.connection() at the same time hold two driver connections."""
    assert len(await hold_connections(database, 2)) == 2


async def test_connection_is_reentrant_within_a_task(database: Database) -> None:
    """Nested database.connection() blocks in one task give the same Connection."""
    async with database.connection() as outer:
        async with database.connection() as inner:
            assert inner is outer
            assert inner.raw_connection is outer.raw_connection
        assert await outer.fetch_val("SELECT 1") == 1
    assert await database.fetch_val("SELECT 2") == 2


@pytest.mark.timeout(30)
async def test_nested_connection_blocks_hold_the_connection_until_the_outer_exits(
    database: Database, database_url: str
) -> None:
    """connection() is counted: leaving the inner block keeps it; leaving the outer frees it."""
    async with Database(database_url, max_size=1, pool_timeout=0.3) as single:
        async with single.connection() as outer:
            async with single.connection():
                await outer.fetch_val("SELECT 1")
            with pytest.raises(aiodatabases.PoolTimeoutError):
                await asyncio.create_task(single.fetch_val("SELECT 2"))
            assert await outer.fetch_val("SELECT 3") == 3
        assert await asyncio.create_task(single.fetch_val("SELECT 4")) == 4


async def test_plain_queries_use_the_connection_the_task_holds(database: Database) -> None:
    """Inside connection() and its transaction, database.fetch_val sees the uncommitted row."""
    async with database.connection() as connection:
        transaction = await connection.transaction()
        await connection.execute(notes.insert(), _note("uncommitted"))
        assert await count_rows(database, notes) == 1
        await transaction.rollback()
    assert await count_rows(database, notes) == 0


@pytest.mark.timeout(30)
async def test_tasks_sharing_one_connection_never_collide(database: Database) -> None:
    """Fifty tasks querying one shared Connection all get their answers, no driver error."""
    async with database.connection() as connection:
        results = await asyncio.gather(
            *(connection.fetch_val("SELECT :n", {"n": n}) for n in range(50)),
            *(connection.execute(notes.insert(), _note(f"n{n}")) for n in range(50)),
        )
    assert results[:50] == list(range(50))
    assert await count_rows(database, notes) == 50


@pytest.mark.timeout(10)
async def test_task_queries_a_shared_connection_while_another_iterates_it(
    database: Database,
) -> None:
    """While one task pauses between rows of iterate(), another runs queries on that Connection."""
    await database.execute_many(notes.insert(), [_note(f"n{n}") for n in range(5)])
    async with database.connection() as connection:
        paused = asyncio.Event()
        resume = asyncio.Event()

        async def slow_reader() -> list[str]:
            texts = []
            async for row in connection.iterate(notes.select().order_by(notes.c.id)):
                texts.append(row.text)
                paused.set()
                await resume.wait()
            return texts

        reader = asyncio.create_task(slow_reader())
        await paused.wait()
        answers = [await connection.fetch_val("SELECT :n", {"n": n}) for n in range(3)]
        resume.set()
        assert await reader == [f"n{n}" for n in range(5)]
    assert answers == [0, 1, 2]


@pytest.mark.timeout(10)
async def test_query_inside_iterate_does_not_hang(database: Database) -> None:
    """A fetch inside async for over iterate() of the same task runs and returns."""
    await database.execute_many(notes.insert(), [_note(f"n{n}") for n in range(5)])
    seen = []
    async for row in database.iterate(notes.select().order_by(notes.c.id)):
        text = await database.fetch_val(select(notes.c.text).where(notes.c.id == row.id))
        seen.append(text)
    assert seen == [f"n{n}" for n in range(5)]


@pytest.mark.timeout(10)
async def test_query_inside_iterate_with_a_one_connection_pool(
    database: Database, database_url: str
) -> None:
    """Even with max_size=1, a query inside iterate() runs on the task's connection."""
    await database.execute_many(notes.insert(), [_note(f"n{n}") for n in range(3)])
    async with Database(database_url, max_size=1, pool_timeout=3) as single:
        totals = [await count_rows(single, notes) async for _ in single.iterate(notes.select())]
    assert totals == [3, 3, 3]


@pytest.mark.timeout(10)
async def test_iterate_inside_iterate_does_not_hang(database: Database) -> None:
    """Nested iterate() loops in one task produce the full cross product."""
    await database.execute_many(notes.insert(), [_note(f"n{n}") for n in range(3)])
    pairs = [
        (outer.id, inner.id)
        async for outer in database.iterate(notes.select().order_by(notes.c.id))
        async for inner in database.iterate(notes.select().order_by(notes.c.id))
    ]
    assert len(pairs) == 9


@pytest.mark.timeout(10)
async def test_write_inside_iterate_in_a_transaction(database: Database) -> None:
    """Inside a transaction, writes made while iterating a select all commit."""
    await database.execute_many(counters.insert(), [{"id": n, "value": n} for n in range(1, 6)])
    async with database.transaction():
        async for row in database.iterate(counters.select().order_by(counters.c.id)):
            await database.execute(notes.insert(), _note(f"copy of {row.value}"))
    assert await count_rows(database, notes) == 5


@pytest.mark.timeout(30)
async def test_child_task_runs_inside_the_parent_transaction(database: Database) -> None:
    """A task spawned inside a transaction sees its writes, and its own writes roll back with it."""

    async def child() -> int:
        seen = await count_rows(database, notes)
        await database.execute(notes.insert(), _note("child"))
        return seen

    async def parent() -> None:
        async with database.transaction():
            await database.execute(notes.insert(), _note("parent"))
            assert await asyncio.create_task(child()) == 1
            assert await count_rows(database, notes) == 2
            raise Abort

    with expect_abort():
        await parent()
    assert await count_rows(database, notes) == 0


@pytest.mark.timeout(30)
async def test_sibling_task_does_not_see_uncommitted_rows(database: Database) -> None:
    """A task started outside the transaction reads only committed data."""
    inserted = asyncio.Event()
    first_read_done = asyncio.Event()
    committed = asyncio.Event()

    async def sibling() -> tuple[int, int]:
        await inserted.wait()
        before = await count_rows(database, notes)
        first_read_done.set()
        await committed.wait()
        after = await count_rows(database, notes)
        return before, after

    sibling_task = asyncio.create_task(sibling())
    async with database.transaction():
        await database.execute(notes.insert(), _note("pending"))
        inserted.set()
        await first_read_done.wait()
    committed.set()
    assert await sibling_task == (0, 1)


@pytest.mark.timeout(60)
async def test_sixteen_read_then_write_tasks_lose_no_update(sqlite_database: Database) -> None:
    """16 tasks each incrementing a counter in transactions: no 'locked' error, no lost update."""
    database = sqlite_database
    iterations = 25
    await database.execute(counters.insert(), {"id": 1, "value": 0})
    current = select(counters.c.value).where(counters.c.id == 1)

    async def increment_many() -> None:
        for _ in range(iterations):
            async with database.transaction():
                value = await database.fetch_val(current)
                await asyncio.sleep(0)
                await database.execute(
                    counters.update().where(counters.c.id == 1), {"value": value + 1}
                )

    await asyncio.gather(*(increment_many() for _ in range(16)))
    assert await database.fetch_val(current) == 16 * iterations


@pytest.mark.timeout(60)
async def test_event_loop_keeps_ticking_during_a_long_query(
    database: Database, database_url: str, slow_sql: SlowSql
) -> None:
    """While a query runs for a second or more, a 10 ms ticker is never held up 200 ms."""
    gaps: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticker_task = asyncio.create_task(ticker())
    await asyncio.sleep(0.05)
    started = time.perf_counter()
    await database.fetch_val(slow_sql(database_url, 1.5))
    query_seconds = time.perf_counter() - started
    stop.set()
    await ticker_task
    assert query_seconds >= 0.7, f"calibration: the slow query took only {query_seconds:.2f}s"
    assert max(gaps) < 0.2, f"the loop was blocked for {max(gaps):.3f}s"


@pytest.mark.timeout(60)
async def test_quick_query_is_not_queued_behind_a_slow_one(
    database: Database, database_url: str, slow_sql: SlowSql
) -> None:
    """A quick query from another task answers while a slow query still runs elsewhere."""
    slow = asyncio.create_task(database.fetch_val(slow_sql(database_url, 2.0)))
    await asyncio.sleep(0.2)
    assert await asyncio.wait_for(database.fetch_val("SELECT 7"), timeout=1.5) == 7
    assert not slow.done()
    await slow
