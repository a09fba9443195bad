"""Cancellation at every point, and timeouts: nothing half-applied, nothing leaked or stuck."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import pytest
from sqlalchemy import select

import aiodatabases
from aiodatabases import Database

from .helpers import SlowSql, count_from_outside, count_rows, hold_connections
from .tables import notes, pair_a, pair_b


async def _keys(database: Database) -> tuple[set[int], set[int]]:
    a_keys = {row.key for row in await database.fetch_all(select(pair_a.c.key))}
    b_keys = {row.key for row in await database.fetch_all(select(pair_b.c.key))}
    return a_keys, b_keys


async def _assert_pool_fully_available(database: Database, max_size: int) -> None:
    """All max_size connections can be checked out at once within a few seconds."""
    held = await asyncio.wait_for(hold_connections(database, max_size), timeout=5)
    assert len(held) == max_size


async def _finish(task: asyncio.Task[Any], seconds: float = 5) -> None:
    """Wait for a cancelled task to end, failing if it does not end within seconds."""
    done, _ = await asyncio.wait({task}, timeout=seconds)
    assert task in done, f"the cancelled task was still running after {seconds}s"


@pytest.mark.timeout(120)
async def test_cancellation_storm_leaves_no_half_transaction_and_no_leak(
    database: Database, database_url: str
) -> None:
    """10,000 two-insert transactions cancelled at random: all-or-nothing, pool intact, usable."""
    max_size = 5
    rng = random.Random(20240611)
    loop = asyncio.get_running_loop()
    began: set[int] = set()
    inside: dict[int, asyncio.Task[Any]] = {}
    tasks: list[asyncio.Task[None]] = []

    async with Database(database_url, max_size=max_size, pool_timeout=60) as storm:

        async def two_inserts(key: int) -> None:
            async with storm.transaction():
                task = asyncio.current_task()
                assert task is not None
                inside[key] = task
                try:
                    await storm.execute(pair_a.insert(), {"key": key})
                    began.add(key)
                    if key % 2:
                        # Other work between the inserts, as in real code: a suspension point.
                        await asyncio.sleep(0)
                    await storm.execute(pair_b.insert(), {"key": key})
                finally:
                    del inside[key]

        async def canceller(stop: asyncio.Event) -> None:
            """Cancel a task inside a transaction or any task, at random moments."""
            while not stop.is_set():
                if inside and rng.random() < 0.5:
                    rng.choice(list(inside.values())).cancel()
                elif tasks:
                    tasks[rng.randrange(len(tasks))].cancel()
                await asyncio.sleep(rng.choice([0, 0, 0, 0.001]))

        stop = asyncio.Event()
        canceller_task = asyncio.create_task(canceller(stop))
        for wave in range(10):
            for offset in range(1000):
                task = asyncio.create_task(two_inserts(wave * 1000 + offset))
                tasks.append(task)
                if rng.random() < 0.3:
                    loop.call_later(rng.uniform(0, 0.05), task.cancel)
            await asyncio.sleep(rng.uniform(0, 0.02))
        results = await asyncio.gather(*tasks, return_exceptions=True)
        stop.set()
        await canceller_task

        unexpected = [
            r for r in results if r is not None and not isinstance(r, asyncio.CancelledError)
        ]
        assert unexpected == []
        a_keys, b_keys = await _keys(storm)
        assert a_keys == b_keys, "half-applied transactions"
        finished = {key for key, result in enumerate(results) if result is None}
        assert finished <= a_keys, "a transaction that returned normally was not committed"
        assert finished, "no transaction completed: the storm tested nothing"
        assert len(finished) < len(tasks), "no transaction was cancelled"
        assert began - a_keys, "no cancellation landed inside a transaction"
        assert storm.pool_stats().in_use == 0
        await _assert_pool_fully_available(storm, max_size)

        follow_up_base = 100_000

        async def follow_up(number: int) -> object:
            if number % 2:
                return await storm.fetch_val("SELECT :n", {"n": number})
            async with storm.transaction():
                await storm.execute(pair_a.insert(), {"key": follow_up_base + number})
                await storm.execute(pair_b.insert(), {"key": follow_up_base + number})
            return number

        errors: list[BaseException] = []
        for chunk in range(10):
            outcomes = await asyncio.gather(
                *(follow_up(chunk * 100 + n) for n in range(100)), return_exceptions=True
            )
            errors.extend(o for o in outcomes if isinstance(o, BaseException))
        assert errors == []
        a_after, b_after = await _keys(storm)
        assert a_after == b_after
        assert len(a_after - a_keys) == 500
        await _assert_pool_fully_available(storm, max_size)


@pytest.mark.timeout(30)
async def test_cancelling_a_task_waiting_for_the_pool_leaks_nothing(
    database: Database, database_url: str
) -> None:
    """Tasks cancelled while waiting for a connection leave the pool whole."""
    async with Database(database_url, max_size=1, pool_timeout=20) as single:
        held = asyncio.Event()
        release = asyncio.Event()

        async def holder() -> None:
            async with single.connection() as connection:
                await connection.fetch_val("SELECT 1")
                held.set()
                await release.wait()

        holder_task = asyncio.create_task(holder())
        await held.wait()
        waiters = [asyncio.create_task(single.fetch_val("SELECT 2")) for _ in range(20)]
        await asyncio.sleep(0.1)
        assert not any(waiter.done() for waiter in waiters)
        for waiter in waiters:
            waiter.cancel()
        outcomes = await asyncio.gather(*waiters, return_exceptions=True)
        assert all(isinstance(outcome, asyncio.CancelledError) for outcome in outcomes)
        release.set()
        await holder_task
        await _assert_pool_fully_available(single, 1)
        assert await asyncio.wait_for(single.fetch_val("SELECT 3"), timeout=3) == 3


@pytest.mark.timeout(60)
async def test_cancelling_a_running_query_frees_its_connection(
    database: Database, database_url: str, slow_sql: SlowSql
) -> None:
    """A task cancelled mid-query ends promptly and the one-connection pool serves again."""
    async with Database(database_url, max_size=1, pool_timeout=5) as single:
        task = asyncio.create_task(single.fetch_val(slow_sql(database_url, 20)))
        await asyncio.sleep(0.3)
        assert not task.done()
        task.cancel()
        await _finish(task)
        assert task.cancelled()
        assert await asyncio.wait_for(single.fetch_val("SELECT 1"), timeout=5) == 1
        await _assert_pool_fully_available(single, 1)


@pytest.mark.timeout(60)
async def test_cancelling_a_query_inside_a_transaction_rolls_it_back(
    database: Database, database_url: str, slow_sql: SlowSql
) -> None:
    """Cancelled mid-query inside a transaction: earlier writes of it are rolled back."""
    started = asyncio.Event()
    async with Database(database_url, max_size=1, pool_timeout=5) as single:

        async def worker() -> None:
            async with single.transaction():
                await single.execute(notes.insert(), {"text": "doomed", "completed": False})
                started.set()
                await single.fetch_val(slow_sql(database_url, 20))

        task = asyncio.create_task(worker())
        await started.wait()
        await asyncio.sleep(0.3)
        task.cancel()
        await _finish(task)
        assert task.cancelled()
        assert await asyncio.wait_for(count_rows(single, notes), timeout=5) == 0
    assert await count_from_outside(database_url, notes) == 0


@pytest.mark.timeout(60)
async def test_cancelling_around_commit_applies_all_or_nothing(
    database: Database, database_url: str
) -> None:
    """Cancelled at each loop step from the last statement through commit: whole or absent.

    The sweep starts cancelling while the transaction's last insert runs and moves one event
    loop iteration later each round, through the commit and past it, so it lands on every
    suspension point of that stretch, whatever the library's commit awaits.
    """
    outcomes = {"cancelled": 0, "committed": 0}
    async with Database(database_url, max_size=1, pool_timeout=5) as single:
        for key in range(60):
            last_statement = asyncio.Event()

            async def worker(key: int, last_statement: asyncio.Event) -> None:
                async with single.transaction():
                    await single.execute(pair_a.insert(), {"key": key})
                    last_statement.set()
                    await single.execute(pair_b.insert(), {"key": key})

            task = asyncio.create_task(worker(key, last_statement))
            await last_statement.wait()
            for _ in range(key):
                await asyncio.sleep(0)
            task.cancel()
            await _finish(task)
            outcomes["cancelled"] += task.cancelled()
            a_keys, b_keys = await asyncio.wait_for(_keys(single), timeout=5)
            assert a_keys == b_keys, f"half-applied transaction at key {key}"
            outcomes["committed"] += key in a_keys
            assert single.pool_stats().in_use == 0
        after = notes.insert().values(text="after", completed=True)
        await asyncio.wait_for(single.execute(after), timeout=5)
        await _assert_pool_fully_available(single, 1)
    assert outcomes["cancelled"] > 0, outcomes
    assert outcomes["committed"] > 0, outcomes
    assert await count_from_outside(database_url, notes) == 1


@pytest.mark.timeout(30)
async def test_cancelling_inside_a_transaction_block_rolls_back_and_releases(
    database: Database, database_url: str
) -> None:
    """A task cancelled while idle inside a transaction block leaves no write and no lock."""
    started = asyncio.Event()
    async with Database(database_url, max_size=1, pool_timeout=5) as single:

        async def worker() -> None:
            async with single.transaction():
                await single.execute(notes.insert(), {"text": "doomed", "completed": False})
                started.set()
                await asyncio.sleep(30)

        task = asyncio.create_task(worker())
        await started.wait()
        task.cancel()
        await _finish(task)
        assert task.cancelled()
        assert await asyncio.wait_for(count_rows(single, notes), timeout=5) == 0
    # The write lock is gone too: another Database can write at once.
    await asyncio.wait_for(database.execute(notes.insert(), {"text": "x", "completed": True}), 5)
    assert await count_from_outside(database_url, notes) == 1


@pytest.mark.timeout(30)
async def test_cancelling_during_iterate_frees_the_connection(
    database: Database, database_url: str
) -> None:
    """A task cancelled between rows of iterate() gives its connection back."""
    await database.execute_many(
        notes.insert(), [{"text": f"n{n}", "completed": False} for n in range(100)]
    )
    got_row = asyncio.Event()
    async with Database(database_url, max_size=1, pool_timeout=5) as single:

        async def reader() -> None:
            async for _ in single.iterate(notes.select()):
                got_row.set()
                await asyncio.sleep(30)

        task = asyncio.create_task(reader())
        await got_row.wait()
        task.cancel()
        await _finish(task)
        assert await asyncio.wait_for(count_rows(single, notes), timeout=5) == 100
        await _assert_pool_fully_available(single, 1)


@pytest.mark.timeout(60)
async def test_command_timeout_raises_query_timeout_error_and_connection_stays_usable(
    database: Database, database_url: str, slow_sql: SlowSql
) -> None:
    """A statement over command_timeout raises QueryTimeoutError; the connection still works."""
    async with Database(database_url, command_timeout=0.3) as timed:
        async with timed.connection() as connection:
            assert await connection.fetch_val("SELECT 1") == 1
            started = time.perf_counter()
            with pytest.raises(aiodatabases.QueryTimeoutError) as info:
                await connection.fetch_val(slow_sql(database_url, 20))
            assert time.perf_counter() - started < 5
            assert isinstance(info.value, TimeoutError)
            assert isinstance(info.value, aiodatabases.OperationalError)
            assert await asyncio.wait_for(connection.fetch_val("SELECT 2"), timeout=5) == 2
        assert await asyncio.wait_for(timed.fetch_val("SELECT 3"), timeout=5) == 3


@pytest.mark.timeout(60)
async def test_command_timeout_inside_a_transaction_rolls_it_back(
    database: Database, database_url: str, slow_sql: SlowSql
) -> None:
    """A timed-out statement in a transaction block raises and the block's writes roll back."""
    async with Database(database_url, command_timeout=0.3) as timed:

        async def insert_then_stall() -> None:
            async with timed.transaction():
                await timed.execute(notes.insert(), {"text": "doomed", "completed": False})
                await timed.fetch_val(slow_sql(database_url, 20))

        with pytest.raises(aiodatabases.QueryTimeoutError):
            await insert_then_stall()
        assert await asyncio.wait_for(count_rows(timed, notes), timeout=5) == 0
        await timed.execute(notes.insert(), {"text": "kept", "completed": True})
    assert await count_from_outside(database_url, notes) == 1
