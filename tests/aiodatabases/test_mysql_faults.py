"""Faults the MySQL/MariaDB backend must survive, against a private MariaDB server.

Each test kills connections, changes server variables or restarts the server, so it runs on a
server of its own (``mariadb_server.py``), never on the shared one. Each ends with the same
leak check: no connection checked out, no transaction left open on the server, and 1,000
follow-up queries without an error.

These run only when AIODATABASES_TEST_URLS names a mysql:// server (as in CI).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

import aiodatabases
from aiodatabases import Database

from ..conftest import env_urls
from .mariadb_server import MariaDBServer

_MYSQL_URLS = [url for url in env_urls() if url.split(":", 1)[0].split("+")[0] == "mysql"]

pytestmark = pytest.mark.skipif(not _MYSQL_URLS, reason="no mysql:// URL in AIODATABASES_TEST_URLS")

_DATABASE = "faults"


@pytest.fixture
async def server(private_mariadb_server: MariaDBServer) -> MariaDBServer:
    """The private server, with an empty database ``faults`` created for this test."""
    async with Database(private_mariadb_server.url(), max_size=1) as root:
        await root.execute(f"DROP DATABASE IF EXISTS {_DATABASE}")
        await root.execute(f"CREATE DATABASE {_DATABASE}")
    return private_mariadb_server


@pytest.fixture
async def admin(server: MariaDBServer) -> AsyncIterator[Database]:
    """One connection to the private server for setting up, inspecting and killing."""
    async with Database(server.url(_DATABASE), max_size=1) as db:
        yield db


async def _wait_until(condition: Callable[[], Awaitable[bool]], seconds: float) -> None:
    for _ in range(int(seconds / 0.02)):
        if await condition():
            return
        await asyncio.sleep(0.02)


async def _open_transactions(admin: Database) -> int:
    value = await admin.fetch_val("SELECT COUNT(*) FROM information_schema.INNODB_TRX")
    return int(value)


async def _assert_no_leaks(db: Database, admin: Database) -> None:
    """0 connections checked out, no open transaction on the server, 1,000 queries succeed.

    Cleanup of a cancelled call (a KILL of its server thread, the rollback of a released
    connection) runs in the background, so both counts get a moment to reach zero.
    """

    async def nothing_checked_out() -> bool:
        return db.pool_stats().in_use == 0

    async def no_open_transaction() -> bool:
        return await _open_transactions(admin) == 0

    await _wait_until(nothing_checked_out, 2)
    assert db.pool_stats().in_use == 0, db.pool_stats()
    await _wait_until(no_open_transaction, 5)
    assert await _open_transactions(admin) == 0
    results = await asyncio.gather(
        *(db.fetch_val("SELECT :n", {"n": n}) for n in range(1000)), return_exceptions=True
    )
    errors = [r for r in results if isinstance(r, BaseException)]
    assert errors == []
    assert results == list(range(1000))
    assert db.pool_stats().in_use == 0


async def _status(admin: Database, name: str) -> int:
    """A counter of the server's ``SHOW GLOBAL STATUS``."""
    row = await admin.fetch_one("SHOW GLOBAL STATUS LIKE :name", {"name": name})
    assert row is not None
    return int(row[1])


async def _other_threads(admin: Database) -> list[int]:
    """Every client thread on the server except the admin's own connection."""
    rows = await admin.fetch_all(
        "SELECT ID FROM information_schema.PROCESSLIST "
        "WHERE ID <> CONNECTION_ID() AND COMMAND NOT IN ('Daemon', 'Killed')"
    )
    return [int(row[0]) for row in rows]


# -- cancellation ----------------------------------------------------------------------------------


@pytest.mark.timeout(240)
async def test_cancellation_storm_leaves_no_half_applied_transaction_or_crossed_result(
    server: MariaDBServer, admin: Database
) -> None:
    """10,000 two-insert transactions (half with the second insert in a savepoint), a third
    cancelled at random moments, then 2,000 token-echo queries, half cancelled: no
    transaction is half applied, every acknowledged one is whole, every answer is its own
    token, and no other error (a cancelled task ends cancelled) is raised."""
    await admin.execute(
        "CREATE TABLE storm (k INT NOT NULL, part CHAR(1) NOT NULL, PRIMARY KEY (k, part))"
    )
    rng = random.Random(10_000)
    loop = asyncio.get_running_loop()
    acknowledged: set[int] = set()
    cancelled = 0
    errors: list[BaseException] = []
    keys = list(range(10_000))
    opened_before = await _status(admin, "Connections")
    async with Database(server.url(_DATABASE), max_size=16, pool_timeout=60) as db:

        async def two_inserts(key: int) -> None:
            async with db.transaction():
                await db.execute("INSERT INTO storm (k, part) VALUES (:k, 'a')", {"k": key})
                if key % 2:
                    await db.execute("INSERT INTO storm (k, part) VALUES (:k, 'b')", {"k": key})
                    return
                async with db.transaction():  # a savepoint: cancelled inside, or at release
                    await db.execute("INSERT INTO storm (k, part) VALUES (:k, 'b')", {"k": key})

        async def worker() -> None:
            nonlocal cancelled
            while keys:
                key = keys.pop()
                task = asyncio.create_task(two_inserts(key))
                if rng.random() < 1 / 3:
                    # From before acquire to after commit: every stage gets hit.
                    loop.call_later(rng.uniform(0, 0.004), task.cancel)
                await asyncio.wait([task])
                if task.cancelled():
                    cancelled += 1
                elif (error := task.exception()) is not None:
                    errors.append(error)
                else:
                    acknowledged.add(key)

        await asyncio.gather(*(worker() for _ in range(32)))
        assert errors == []
        assert cancelled > 1000, "too few cancellations landed: the storm tested little"
        # Each cancellation that landed mid-statement cost its connection.
        assert await _status(admin, "Connections") - opened_before > 100

        mismatched: list[tuple[int, object]] = []

        async def echo(token: int) -> None:
            row = await db.fetch_one(
                "SELECT :token FROM (SELECT SLEEP(:pause)) AS s",
                {"token": token, "pause": rng.choice([0, 0.001, 0.002])},
            )
            if row is None or row[0] != token:
                mismatched.append((token, None if row is None else row[0]))

        tasks = [asyncio.create_task(echo(n)) for n in range(2000)]
        for task in tasks[::2]:
            loop.call_later(rng.uniform(0, 0.02), task.cancel)
        await asyncio.wait(tasks)
        echo_errors = [t.exception() for t in tasks if not t.cancelled()]
        assert [e for e in echo_errors if e is not None] == []
        assert mismatched == []
        assert 0 < sum(t.cancelled() for t in tasks) < len(tasks)

        half_applied = await admin.fetch_all("SELECT k FROM storm GROUP BY k HAVING COUNT(*) <> 2")
        assert [row[0] for row in half_applied] == []
        stored = {int(row[0]) for row in await admin.fetch_all("SELECT DISTINCT k FROM storm")}
        assert acknowledged <= stored
        await _assert_no_leaks(db, admin)


# -- killed connections ----------------------------------------------------------------------------


@pytest.mark.timeout(60)
async def test_all_connections_killed_twice_under_load_lose_no_acknowledged_write(
    server: MariaDBServer, admin: Database
) -> None:
    """Every connection KILLed twice while 64 tasks insert unique keys: every acknowledged
    write is stored, each kill fails at most pool-size requests, none waits over 5 s."""
    await admin.execute("CREATE TABLE writes (k VARCHAR(40) PRIMARY KEY)")
    max_size = 8
    loop = asyncio.get_running_loop()
    acknowledged: list[str] = []
    failures: list[float] = []
    other_errors: list[BaseException] = []
    events: list[float] = []
    killed: list[int] = []
    slowest = 0.0
    stop = loop.time() + 3.5
    async with Database(server.url(_DATABASE), max_size=max_size, pool_timeout=10) as db:

        async def writer(number: int) -> None:
            nonlocal slowest
            step = 0
            while loop.time() < stop:
                step += 1
                key = f"{number}-{step}"
                started = loop.time()
                try:
                    await db.execute("INSERT INTO writes (k) VALUES (:k)", {"k": key})
                    acknowledged.append(key)
                except aiodatabases.OperationalError:
                    failures.append(loop.time())
                except Exception as exc:
                    other_errors.append(exc)
                slowest = max(slowest, loop.time() - started)

        async def kill_everything_twice() -> None:
            for _ in range(2):
                await asyncio.sleep(1)
                events.append(loop.time())
                threads = await _other_threads(admin)
                for thread_id in threads:
                    try:
                        await admin.execute(f"KILL {thread_id}")
                        killed.append(thread_id)
                    except aiodatabases.OperationalError as exc:
                        if exc.args[0] != 1094:  # unknown thread: it ended meanwhile
                            raise

        await asyncio.gather(*(writer(n) for n in range(64)), kill_everything_twice())
        assert other_errors == []
        assert len(killed) >= 2 * max_size, "the pool's connections were not all killed"
        per_event = [
            sum(1 for at in failures if start <= at < end)
            for start, end in zip(events, [*events[1:], float("inf")], strict=True)
        ]
        assert all(at >= events[0] for at in failures), "a request failed before any kill"
        assert max(per_event) <= max_size, per_event
        assert slowest < 5
        assert db.pool_stats().size <= max_size
        stored = {row[0] for row in await admin.fetch_all("SELECT k FROM writes")}
        missing = set(acknowledged) - stored
        assert missing == set()
        assert len(acknowledged) > 1000
        await _assert_no_leaks(db, admin)


# -- idle connections ------------------------------------------------------------------------------


@pytest.mark.timeout(60)
async def test_server_wait_timeout_of_two_seconds_never_fails_a_request_after_idleness(
    server: MariaDBServer, admin: Database
) -> None:
    """Server wait_timeout of 2 s, 3 s of idleness, then 100 queries at once: 0 errors."""
    await admin.execute("SET GLOBAL wait_timeout = 2")
    try:
        async with Database(server.url(_DATABASE), min_size=4, max_size=10) as db:
            warm = await asyncio.gather(*(db.fetch_val("SELECT :n", {"n": n}) for n in range(40)))
            assert warm == list(range(40))
            assert db.pool_stats().size == 10
            await asyncio.sleep(3)
            # The server has hung up on every pooled connection (and on the admin's) by now.
            assert await _other_threads(admin) == []
            results = await asyncio.gather(
                *(db.fetch_val("SELECT :n", {"n": n}) for n in range(100)),
                return_exceptions=True,
            )
            assert results == list(range(100))
            await _assert_no_leaks(db, admin)
    finally:
        await admin.execute("SET GLOBAL wait_timeout = DEFAULT")


@pytest.mark.timeout(60)
async def test_statements_on_a_hung_server_time_out_promptly_and_the_pool_recovers(
    server: MariaDBServer, admin: Database
) -> None:
    """A server that stops answering (SIGSTOP): statements raise QueryTimeoutError within
    command_timeout plus connect_timeout, saying they could not be stopped; once it answers
    again every query succeeds."""
    loop = asyncio.get_running_loop()
    async with Database(
        server.url(_DATABASE), command_timeout=0.5, connect_timeout=1, max_size=4, pool_timeout=5
    ) as db:
        assert await asyncio.gather(*(db.fetch_val("SELECT 1") for _ in range(4))) == [1] * 4
        with server.frozen():
            started = loop.time()
            results = await asyncio.gather(
                *(db.fetch_val("SELECT 2") for _ in range(4)), return_exceptions=True
            )
            took = loop.time() - started
        assert all(isinstance(r, aiodatabases.QueryTimeoutError) for r in results), results
        assert all("could not be stopped" in str(r) for r in results), results
        # Four statements, each waiting for its own KILL QUERY to give up (1 s, one at a time).
        assert took < 0.5 + 4 * 1 + 0.5
        assert await asyncio.gather(*(db.fetch_val("SELECT 3") for _ in range(20))) == [3] * 20
        await _assert_no_leaks(db, admin)


# -- restart ---------------------------------------------------------------------------------------


@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["shutdown", "crash"])
async def test_server_restarted_mid_load_is_back_within_a_second_and_loses_no_write(
    server: MariaDBServer, admin: Database, how: str
) -> None:
    """The server shut down (or killed) and started again under 16-task load: requests
    succeed again within 1 s of the server accepting, and every acknowledged write is stored."""
    await admin.execute("CREATE TABLE writes (k VARCHAR(40) PRIMARY KEY)")
    loop = asyncio.get_running_loop()
    acknowledged: list[tuple[str, float]] = []
    other_errors: list[BaseException] = []
    done = asyncio.Event()
    async with Database(
        server.url(_DATABASE), max_size=8, pool_timeout=10, connect_timeout=5
    ) as db:

        async def writer(number: int) -> None:
            step = 0
            while not done.is_set():
                step += 1
                key = f"{number}-{step}"
                try:
                    await db.execute("INSERT INTO writes (k) VALUES (:k)", {"k": key})
                    acknowledged.append((key, loop.time()))
                except aiodatabases.OperationalError:
                    await asyncio.sleep(0.005)
                except Exception as exc:
                    other_errors.append(exc)

        def bounce() -> float:
            if how == "crash":
                server.kill()
                return server.start()
            return server.restart()[1]

        writers = [asyncio.create_task(writer(n)) for n in range(16)]
        await asyncio.sleep(1)
        before = len(acknowledged)
        # The moment the server greeted a client, by time.monotonic(): the loop's clock.
        accepting = await asyncio.to_thread(bounce)
        await asyncio.sleep(1.5)
        done.set()
        await asyncio.gather(*writers)
        assert other_errors == []
        assert before > 0
        after_restart = [at for _, at in acknowledged if at > accepting]
        assert after_restart, "no write succeeded after the restart"
        assert min(after_restart) - accepting < 1.0
        stored = {row[0] for row in await admin.fetch_all("SELECT k FROM writes")}
        assert {key for key, _ in acknowledged} - stored == set()
        await _assert_no_leaks(db, admin)


# -- deadlocks -------------------------------------------------------------------------------------


@pytest.mark.timeout(120)
async def test_counter_incremented_under_forced_deadlocks_equals_acknowledged_increments(
    server: MariaDBServer, admin: Database
) -> None:
    """32 tasks read a counter under a shared lock and write it back plus one, in
    run_in_transaction: the lock upgrades deadlock again and again, the helper runs the
    whole function again, and the final counter equals the increments acknowledged."""
    await admin.execute("CREATE TABLE counter (id INT PRIMARY KEY, value INT NOT NULL)")
    await admin.execute("INSERT INTO counter (id, value) VALUES (1, 0)")
    deadlocks_before = await _status(admin, "Innodb_deadlocks")
    acknowledged = 0
    gave_up: list[BaseException] = []
    other_errors: list[BaseException] = []
    async with Database(server.url(_DATABASE), max_size=32, pool_timeout=30) as db:

        async def increment(connection: aiodatabases.Connection) -> None:
            # Both holders of the shared lock then want the exclusive one: a deadlock.
            value = await connection.fetch_val(
                "SELECT value FROM counter WHERE id = 1 LOCK IN SHARE MODE"
            )
            await asyncio.sleep(0)
            await connection.execute(
                "UPDATE counter SET value = :value WHERE id = 1", {"value": value + 1}
            )

        async def worker() -> None:
            nonlocal acknowledged
            for _ in range(10):
                try:
                    await db.run_in_transaction(increment, attempts=30, backoff=0.005)
                    acknowledged += 1
                except aiodatabases.DatabaseError as exc:
                    (gave_up if exc.retryable else other_errors).append(exc)

        await asyncio.gather(*(worker() for _ in range(32)))
        assert other_errors == []
        deadlocks = await _status(admin, "Innodb_deadlocks") - deadlocks_before
        assert deadlocks > 10, "the increments did not deadlock: the test tested little"
        assert acknowledged > 0
        assert await admin.fetch_val("SELECT value FROM counter WHERE id = 1") == acknowledged
        await _assert_no_leaks(db, admin)
