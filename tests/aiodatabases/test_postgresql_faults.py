"""PostgreSQL faults the backend must survive, on a private cluster the module starts itself.

Sessions are killed, the server is restarted, tasks are cancelled by the thousand, statements
time out and the pool is closed under load. Writes carry unique keys so that each outcome is
told apart: acknowledged (the caller saw success: the row must be stored), failed before
COMMIT (the row must be absent) and indeterminate (the connection died during COMMIT: either).
Every test ends with the same leak check.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information
import pytest
from sqlalchemy import select

import aiodatabases
from aiodatabases import Database
from aiodatabases.backends.asyncpg import AsyncpgConnection

from .conftest import create_tables
from .pgcluster import PgCluster, private_cluster
from .tables import counters, notes, pair_a, pair_b

_LOAD = "aiodatabases-load"  # application_name of the pools under test
_BUSY = "another operation is in progress"


@pytest.fixture(scope="module")
def cluster() -> Iterator[PgCluster]:
    """A private PostgreSQL server for this module; tests may stop and restart it."""
    with private_cluster() as started:
        yield started


@pytest.fixture
async def observer(cluster: PgCluster) -> AsyncIterator[Any]:
    """A raw asyncpg connection to the private server, outside every pool under test."""
    if not cluster.accepts():
        cluster.start()  # a failed test may have left it stopped
    con = await asyncpg.connect(cluster.url)
    try:
        yield con
    finally:
        await con.close()


@pytest.fixture
async def tables(cluster: PgCluster, observer: Any) -> None:
    """Fresh test tables in the private server."""
    async with Database(cluster.url) as db:
        await create_tables(db)


def _load_db(cluster: PgCluster, **options: Any) -> Database:
    settings = {"application_name": _LOAD}
    return Database(cluster.url, server_settings=settings, **options)


async def _stored_keys(observer: Any) -> set[int]:
    return {row["key"] for row in await observer.fetch("SELECT key FROM pair_a")}


async def _assert_no_leaks(db: Database, observer: Any) -> None:
    """The leak check every fault test ends with.

    0 connections checked out, 0 sessions idle in transaction on the server, and 1,000
    follow-up queries at once (half of them inserts in transactions) with 0 errors, each
    returning its own value.
    """
    assert db.pool_stats().in_use == 0
    idle_in_transaction = await observer.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%'"
    )
    assert idle_in_transaction == 0
    base = 10_000_000

    async def follow_up(number: int) -> object:
        if number % 2:
            return await db.fetch_val("SELECT :n", {"n": number})
        async with db.transaction():
            await db.execute(notes.insert(), {"text": f"follow-up {number}", "completed": True})
        return number

    results = await asyncio.gather(
        *(follow_up(base + n) for n in range(1000)), return_exceptions=True
    )
    assert results == [base + n for n in range(1000)]
    assert db.pool_stats().in_use == 0


# -- transactional load with unique keys ----------------------------------------------------


@dataclass
class Attempt:
    """One transaction of the load: its key, when it ran and how it ended."""

    key: int
    started: float
    ended: float = 0.0
    phase: str = "begin"  # how far it got: begin, insert, commit, done
    error: BaseException | None = None
    after_commit: bool = False  # the server had acknowledged its COMMIT

    @property
    def acknowledged(self) -> bool:
        """The caller was told the write is stored."""
        return self.error is None

    @property
    def indeterminate(self) -> bool:
        """The connection failed during COMMIT: the write may or may not be stored."""
        return self.error is not None and self.phase == "commit"


@dataclass
class Load:
    """64 tasks inserting uniquely keyed rows in transactions until stopped."""

    db: Database
    attempts: list[Attempt] = field(default_factory=list)
    unexpected: list[BaseException] = field(default_factory=list)
    running: bool = True
    committed: set[asyncio.Task[Any]] = field(default_factory=set)

    async def writer(self, number: int) -> None:
        """Insert a row per transaction; after a failure, pause briefly, as a client would."""
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        step = 0
        while self.running:
            step += 1
            attempt = Attempt(number * 1_000_000 + step, loop.time())
            self.attempts.append(attempt)
            self.committed.discard(task)
            try:
                async with self.db.transaction():
                    attempt.phase = "insert"
                    await self.db.execute(pair_a.insert(), {"key": attempt.key})
                    attempt.phase = "commit"
                attempt.phase = "done"
            except aiodatabases.OperationalError as exc:
                attempt.error = exc
                attempt.after_commit = task in self.committed
            except Exception as exc:
                attempt.error = exc
                self.unexpected.append(exc)
            attempt.ended = loop.time()
            if attempt.error is not None:
                await asyncio.sleep(0.02)

    def check(self, stored: set[int]) -> None:
        """0 acknowledged writes lost, 0 failed writes stored, 0 errors after a COMMIT."""
        assert self.unexpected == []
        lost = [a.key for a in self.attempts if a.acknowledged and a.key not in stored]
        assert lost == []
        phantom = [
            a.key for a in self.attempts if a.error and not a.indeterminate and a.key in stored
        ]
        assert phantom == []
        assert [a.error for a in self.attempts if a.after_commit] == []
        slowest = max(a.ended - a.started for a in self.attempts)
        assert slowest < 5


@pytest.fixture
def spy_commits(monkeypatch: pytest.MonkeyPatch) -> set[asyncio.Task[Any]]:
    """The tasks whose last COMMIT the server acknowledged (a spy; nothing is replaced)."""
    committed: set[asyncio.Task[Any]] = set()
    commit = AsyncpgConnection.commit

    async def spied(self: AsyncpgConnection) -> None:
        await commit(self)
        task = asyncio.current_task()
        if task is not None:
            committed.add(task)

    monkeypatch.setattr(AsyncpgConnection, "commit", spied)
    return committed


@pytest.mark.timeout(60)
@pytest.mark.usefixtures("tables")
async def test_all_sessions_terminated_twice_under_load_lose_no_acknowledged_write(
    cluster: PgCluster, observer: Any, spy_commits: set[asyncio.Task[Any]]
) -> None:
    """Every session of the pool killed twice under 64-task transactional load: 0 acknowledged
    writes lost, at most pool-size failures per kill, no error after a COMMIT, no wait > 5 s."""
    max_size = 8
    loop = asyncio.get_running_loop()
    events: list[float] = []
    killed: list[int] = []
    async with _load_db(cluster, max_size=max_size, pool_timeout=10) as db:
        load = Load(db, committed=spy_commits)

        async def kill_all_twice() -> None:
            for _ in range(2):
                await asyncio.sleep(1)
                events.append(loop.time())
                killed.append(
                    await observer.fetchval(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE application_name = $1",
                        _LOAD,
                    )
                )
            await asyncio.sleep(1)
            load.running = False

        await asyncio.gather(*(load.writer(n) for n in range(64)), kill_all_twice())

        assert killed == [max_size, max_size]
        load.check(await _stored_keys(observer))
        failures = [a for a in load.attempts if a.error is not None]
        assert [a for a in failures if a.ended < events[0]] == []
        first = [a for a in failures if events[0] <= a.ended < events[1]]
        second = [a for a in failures if a.ended >= events[1]]
        assert len(first) <= max_size, first[:3]
        assert len(second) <= max_size, second[:3]
        assert any(a.acknowledged and a.started > events[1] for a in load.attempts)
        await _assert_no_leaks(db, observer)


@pytest.mark.timeout(90)
@pytest.mark.usefixtures("tables")
async def test_server_restarted_twice_under_load_loses_nothing_and_serves_within_a_second(
    cluster: PgCluster, observer: Any, spy_commits: set[asyncio.Task[Any]]
) -> None:
    """The server stopped (fast, then immediate) and started twice under load: 0 acknowledged
    writes lost, no wait > 5 s, and every transaction begun 1 s after the server accepts
    connections again succeeds."""
    await observer.close()
    max_size = 8
    loop = asyncio.get_running_loop()
    accepting: list[float] = []
    async with _load_db(cluster, max_size=max_size, pool_timeout=10, timeout=2) as db:
        load = Load(db, committed=spy_commits)

        async def restart_twice() -> None:
            for mode in ("fast", "immediate"):
                await asyncio.sleep(1)
                await cluster.stop_async(mode)
                await asyncio.sleep(0.3)
                await cluster.launch_async()
                while True:
                    try:
                        probe = await asyncpg.connect(cluster.url, timeout=1)
                    except (OSError, asyncpg.PostgresError, TimeoutError):
                        await asyncio.sleep(0.01)
                        continue
                    accepting.append(loop.time())
                    await probe.close()
                    break
                await asyncio.sleep(1.5)
            load.running = False

        await asyncio.gather(*(load.writer(n) for n in range(64)), restart_twice())

        async with Database(cluster.url) as reader:
            stored = {row.key for row in await reader.fetch_all(select(pair_a.c.key))}
        load.check(stored)
        assert any(a.error is not None for a in load.attempts), "the restarts went unnoticed"
        for back in accepting:
            served = [a.ended for a in load.attempts if a.acknowledged and a.started >= back]
            assert min(served) < back + 1, "no transaction committed within 1 s"
            late = [a for a in load.attempts if back + 1 <= a.started < back + 1.5]
            assert late, "no transaction ran in the second after the restart"
            assert [a.error for a in late if a.error is not None] == []
        observer = await asyncpg.connect(cluster.url)
        try:
            await _assert_no_leaks(db, observer)
        finally:
            await observer.close()


@pytest.mark.timeout(90)
@pytest.mark.usefixtures("tables")
async def test_serializable_increments_under_run_in_transaction_lose_no_update(
    cluster: PgCluster, observer: Any
) -> None:
    """32 tasks read-modify-write one counter in serializable transactions: the serialization
    failures (40001) are retried by run_in_transaction and every increment counts once."""
    await observer.execute("INSERT INTO counters (id, value) VALUES (1, 0)")
    runs = 0

    async def increment(connection: aiodatabases.Connection) -> None:
        nonlocal runs
        runs += 1
        value = await connection.fetch_val(select(counters.c.value).where(counters.c.id == 1))
        await asyncio.sleep(0)  # other tasks read the same value meanwhile
        update = counters.update().where(counters.c.id == 1).values(value=value + 1)
        await connection.execute(update)

    async with _load_db(cluster, max_size=10, pool_timeout=30) as db:

        async def worker() -> int:
            for _ in range(5):
                await db.run_in_transaction(
                    increment, attempts=100, max_backoff=0.2, isolation="serializable"
                )
            return 5

        results = await asyncio.gather(*(worker() for _ in range(32)), return_exceptions=True)
        assert results == [5] * 32
        assert await observer.fetchval("SELECT value FROM counters WHERE id = 1") == 160
        assert runs > 170, "hardly any serialization failure: the test tested little"
        await _assert_no_leaks(db, observer)


# -- cancellation ---------------------------------------------------------------------------


@pytest.fixture
async def loop_errors() -> AsyncIterator[list[dict[str, Any]]]:
    """What reaches the event loop's exception handler (unretrieved task errors ...)."""
    errors: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: errors.append(context))
    try:
        yield errors
    finally:
        loop.set_exception_handler(previous)


@pytest.mark.timeout(120)
@pytest.mark.usefixtures("tables")
async def test_cancellation_storm_then_token_echo_leaves_nothing_half_applied_or_crossed(
    cluster: PgCluster,
    observer: Any,
    loop_errors: list[dict[str, Any]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """10,000 two-insert transactions each cancelled at a random moment, then 2,000 token
    echoes (a quarter cancelled): 0 half-applied, 0 mismatched, 0 "another operation"."""
    caplog.set_level(logging.DEBUG, logger="aiodatabases")
    max_size = 10
    rng = random.Random(20241129)
    loop = asyncio.get_running_loop()
    async with _load_db(cluster, max_size=max_size, pool_timeout=60) as db:
        began: set[int] = set()

        async def two_inserts(key: int) -> None:
            task = asyncio.current_task()
            assert task is not None
            kind = key % 10
            async with db.transaction():
                if kind >= 8:
                    # Mid-statement, at COMMIT or just after: the costly kind, as a cancelled
                    # statement takes its connection with it.
                    loop.call_later(rng.uniform(0, 0.003), task.cancel)
                await db.execute(pair_a.insert(), {"key": key})
                began.add(key)
                if kind in {5, 6, 7}:
                    task.cancel()  # arrives while the task awaits other work
                await asyncio.sleep(0)  # other work between the statements
                await db.execute(pair_b.insert(), {"key": key})

        # Every task is cancelled: half of them before or while waiting for a connection
        # (kinds 0-4), the rest inside the transaction at the points above.
        results: list[object] = []
        for wave in range(20):
            storm = [asyncio.create_task(two_inserts(wave * 500 + n)) for n in range(500)]
            for key, task in enumerate(storm):
                if key % 10 < 5:
                    loop.call_later(rng.uniform(0, 0.02), task.cancel)
            results += await asyncio.gather(*storm, return_exceptions=True)

        errors = [r for r in results if r is not None and not isinstance(r, asyncio.CancelledError)]
        assert errors == []
        finished = {key for key, result in enumerate(results) if result is None}
        a_keys = await _stored_keys(observer)
        b_keys = {row["key"] for row in await observer.fetch("SELECT key FROM pair_b")}
        assert a_keys == b_keys, "half-applied transactions"
        assert finished <= a_keys
        assert len(began - a_keys) >= 3000, "too few cancellations landed inside a transaction"
        assert len(finished) < 5000

        mismatched: list[tuple[int, object]] = []

        async def echo(number: int) -> None:
            token = secrets.randbits(62)
            if number % 2:
                got = await db.fetch_val("SELECT :token", {"token": token})
            else:
                async with db.transaction():
                    got = await db.fetch_val(
                        "SELECT :token FROM pg_sleep(:pause)", {"token": token, "pause": 0.001}
                    )
            if got != token:
                mismatched.append((token, got))

        echoes = [asyncio.create_task(echo(n)) for n in range(2000)]
        for task in echoes[::4]:
            loop.call_later(rng.uniform(0, 0.02), task.cancel)
        outcomes = await asyncio.gather(*echoes, return_exceptions=True)
        assert [o for o in outcomes if isinstance(o, Exception)] == []
        assert mismatched == []

        busy = [r.getMessage() for r in caplog.records if _BUSY in r.getMessage()]
        busy += [str(c) for c in loop_errors if _BUSY in str(c)]
        assert busy == []
        assert loop_errors == []
        await _assert_no_leaks(db, observer)


# -- dead sessions, timeouts, shutdown ------------------------------------------------------


async def _wait_for_sessions(observer: Any, ended: list[int] | None = None) -> None:
    """Wait until the pools under test have no session left (or none of the pids ``ended``)."""
    query = "SELECT pid, state, query FROM pg_stat_activity WHERE application_name = $1"
    for _ in range(200):
        rows = await observer.fetch(query, _LOAD)
        left = [row for row in rows if ended is None or row["pid"] in ended]
        if not left:
            return
        await asyncio.sleep(0.025)
    raise AssertionError(f"sessions of the pool are still open: {left}")


@pytest.mark.timeout(60)
@pytest.mark.usefixtures("tables")
async def test_idle_connections_killed_then_100_queries_at_once_all_succeed(
    cluster: PgCluster, observer: Any
) -> None:
    """Every idle pooled session terminated by the server, then 100 reads and writes at once:
    0 errors, every write stored once."""
    max_size = 10
    async with _load_db(cluster, max_size=max_size, pool_timeout=20) as db:
        ready = asyncio.Barrier(max_size)

        async def hold() -> None:
            async with db.connection() as connection:
                await connection.fetch_val("SELECT 1")
                await ready.wait()

        await asyncio.gather(*(hold() for _ in range(max_size)))
        assert db.pool_stats().idle == max_size
        killed = await observer.fetch(
            "SELECT pid, pg_terminate_backend(pid) AS ended FROM pg_stat_activity "
            "WHERE application_name = $1",
            _LOAD,
        )
        assert [row["ended"] for row in killed] == [True] * max_size
        # asyncpg's pool may open a connection to keep min_size meanwhile: only the killed
        # sessions must be gone.
        await _wait_for_sessions(observer, [row["pid"] for row in killed])

        async def query(number: int) -> object:
            if number % 2:
                return await db.fetch_val("SELECT :n", {"n": number})
            await db.execute(pair_a.insert(), {"key": number})
            return number

        results = await asyncio.gather(*(query(n) for n in range(100)), return_exceptions=True)
        assert results == list(range(100))
        assert await _stored_keys(observer) == set(range(0, 100, 2))
        await _assert_no_leaks(db, observer)


@pytest.mark.timeout(30)
@pytest.mark.usefixtures("tables")
async def test_statement_timeout_raises_a_clear_error_fast_and_the_connection_is_reused(
    cluster: PgCluster, observer: Any
) -> None:
    """A statement past the server's statement_timeout raises QueryTimeoutError within 1.5 s,
    naming the timeout; the same session then runs queries and transactions."""
    loop = asyncio.get_running_loop()
    settings = {"application_name": _LOAD, "statement_timeout": "300"}
    async with Database(cluster.url, max_size=2, server_settings=settings) as db:
        async with db.connection() as connection:
            pid = await connection.fetch_val("SELECT pg_backend_pid()")

            async def too_slow(in_transaction: bool) -> None:
                if not in_transaction:
                    await connection.fetch_val("SELECT pg_sleep(5)")
                    return
                async with connection.transaction():
                    await connection.execute(pair_a.insert(), {"key": 1})
                    await connection.fetch_val("SELECT pg_sleep(5)")

            for in_transaction in (False, True):
                started = loop.time()
                with pytest.raises(
                    aiodatabases.QueryTimeoutError, match="statement timeout"
                ) as info:
                    await too_slow(in_transaction)
                assert loop.time() - started < 1.5
                assert isinstance(info.value, TimeoutError)
                assert isinstance(info.value, asyncpg.QueryCanceledError)
            assert await connection.fetch_val("SELECT pg_backend_pid()") == pid
            async with connection.transaction():
                await connection.execute(pair_a.insert(), {"key": 2})
        assert await _stored_keys(observer) == {2}
        await _assert_no_leaks(db, observer)


@pytest.mark.timeout(60)
@pytest.mark.usefixtures("tables")
async def test_disconnect_with_10_transactions_in_flight_ends_every_session(
    cluster: PgCluster, observer: Any
) -> None:
    """disconnect() while 10 tasks are inside transactions (half mid-statement, half idle):
    done within 10 s, no session left on the server, nothing of theirs committed."""
    loop = asyncio.get_running_loop()
    db = _load_db(cluster, max_size=10)
    await db.connect()
    inside = asyncio.Barrier(11)

    async def in_flight(key: int) -> None:
        async with db.transaction():
            await db.execute(pair_a.insert(), {"key": key})
            await inside.wait()
            if key % 2:
                await db.fetch_val("SELECT pg_sleep(60)")
            else:
                await asyncio.sleep(60)

    tasks = [asyncio.create_task(in_flight(n)) for n in range(10)]
    await inside.wait()
    await asyncio.sleep(0.1)  # the statements reach the server
    started = loop.time()
    await db.disconnect()
    assert loop.time() - started < 10
    await _wait_for_sessions(observer)
    done, _ = await asyncio.wait(tasks[1::2], timeout=5)
    assert len(done) == 5, "a task mid-statement did not see its connection close"
    assert all(isinstance(t.exception(), aiodatabases.OperationalError) for t in done)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert await _stored_keys(observer) == set()
    await db.connect()
    try:
        await _assert_no_leaks(db, observer)
    finally:
        await db.disconnect()
