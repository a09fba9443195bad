"""MySQL and MariaDB specifics: the asyncmy backend's protocol safety, types, errors, options.

These run only when AIODATABASES_TEST_URLS names a mysql:// server.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import enum
import random
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncmy
import pytest
import sqlalchemy
from sqlalchemy import select
from sqlalchemy.schema import CreateTable, DropTable

import aiodatabases
from aiodatabases import Database

from ..conftest import env_urls, require_reachable
from .conftest import create_tables, drop_tables
from .helpers import count_rows
from .tables import counters, kitchen_sink, notes, pair_a, users

_MYSQL_URLS = [url for url in env_urls() if url.split(":", 1)[0].split("+")[0] == "mysql"]

pytestmark = pytest.mark.skipif(not _MYSQL_URLS, reason="no mysql:// URL in AIODATABASES_TEST_URLS")


@pytest.fixture
def mysql_url() -> str:
    """The first MySQL/MariaDB URL under test."""
    url = _MYSQL_URLS[0]
    require_reachable(url)
    return url


@pytest.fixture
async def mysql(mysql_url: str) -> AsyncIterator[Database]:
    """A connected MySQL Database with every test table freshly created."""
    db = Database(mysql_url)
    await db.connect()
    await create_tables(db)
    try:
        yield db
    finally:
        await drop_tables(db)
        await db.disconnect()


async def _thread_ids(database: Database) -> set[int]:
    """The server thread ids of every connection of the server, as seen from outside."""
    rows = await database.fetch_all("SELECT ID FROM information_schema.PROCESSLIST")
    return {int(row[0]) for row in rows}


async def _own_thread_id(connection: aiodatabases.Connection) -> int:
    value = await connection.fetch_val("SELECT CONNECTION_ID()")
    assert isinstance(value, int)
    return value


# -- protocol safety under cancellation and timeouts ----------------------------------------


@pytest.mark.timeout(120)
async def test_cancelled_queries_never_return_another_requests_rows(mysql_url: str) -> None:
    """2,000 token-echo queries, half cancelled mid-flight: every answer is its own token."""
    rng = random.Random(4)
    loop = asyncio.get_running_loop()
    mismatched: list[tuple[int, object]] = []
    connection_ids: set[int] = set()
    async with Database(mysql_url, max_size=8, pool_timeout=60) as db:

        async def echo(token: int) -> None:
            async with db.connection() as connection:
                task = asyncio.current_task()
                assert task is not None
                if rng.random() < 0.5:
                    loop.call_later(rng.uniform(0, 0.004), task.cancel)
                row = await connection.fetch_one(
                    "SELECT :token, CONNECTION_ID() FROM (SELECT SLEEP(:pause)) AS s",
                    {"token": token, "pause": rng.choice([0, 0.001, 0.002])},
                )
                assert row is not None
                connection_ids.add(row[1])
                if row[0] != token:
                    mismatched.append((token, row[0]))

        tasks = [asyncio.create_task(echo(n)) for n in range(2000)]
        results = await asyncio.gather(*tasks, return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        assert all(isinstance(e, asyncio.CancelledError) for e in errors), errors[:3]
        assert 0 < len(errors) < len(tasks)
        assert mismatched == []
        assert len(connection_ids) > 8, "no cancellation landed mid-query"
        assert db.pool_stats().in_use == 0
        follow_up = await asyncio.gather(
            *(db.fetch_val("SELECT :n", {"n": n}) for n in range(1000))
        )
        assert follow_up == list(range(1000))


@pytest.mark.timeout(30)
async def test_cancelled_statement_is_killed_on_the_server(mysql: Database, mysql_url: str) -> None:
    """A task cancelled mid-query: its server thread ends at once, its row locks with it."""
    async with Database(mysql_url, max_size=1) as single:
        thread_id: list[int] = []
        started = asyncio.Event()

        async def hold_lock_and_sleep() -> None:
            async with single.transaction():
                await single.execute(counters.insert(), {"id": 1, "value": 1})
                thread_id.append(await _own_thread_id(single.connection()))
                started.set()
                await single.fetch_val("SELECT SLEEP(30)")

        task = asyncio.create_task(hold_lock_and_sleep())
        await started.wait()
        await asyncio.sleep(0.2)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        for _ in range(50):
            if thread_id[0] not in await _thread_ids(mysql):
                break
            await asyncio.sleep(0.1)
        assert thread_id[0] not in await _thread_ids(mysql)
        # The same key is free again: the orphaned insert was rolled back, not left holding it.
        await asyncio.wait_for(mysql.execute(counters.insert(), {"id": 1, "value": 2}), 5)
        assert await mysql.fetch_val(select(counters.c.value)) == 2


@pytest.mark.timeout(30)
async def test_command_timeout_keeps_the_same_connection(mysql_url: str) -> None:
    """A timed-out statement is stopped with KILL QUERY: the connection itself survives."""
    db = Database(mysql_url, max_size=1, command_timeout=0.3)
    async with db, db.connection() as connection:
        before = await _own_thread_id(connection)
        # BENCHMARK() ends without an error when killed: the timeout must still be raised.
        with pytest.raises(aiodatabases.QueryTimeoutError):
            await connection.fetch_val("SELECT BENCHMARK(10000000000, MD5('x'))")
        with pytest.raises(aiodatabases.QueryTimeoutError):
            await connection.fetch_val("SELECT SLEEP(10)")
        assert await _own_thread_id(connection) == before
        assert await connection.fetch_val("SELECT 42") == 42


@pytest.mark.timeout(30)
async def test_command_timeout_none_lets_statements_run(mysql_url: str) -> None:
    """command_timeout=none disables the limit."""
    async with Database(mysql_url, command_timeout="none") as db:
        assert await db.fetch_val("SELECT SLEEP(0.2)") == 0


# -- idle and killed connections --------------------------------------------------------------


@pytest.mark.timeout(60)
async def test_idle_connections_past_wait_timeout_never_fail_a_request(mysql_url: str) -> None:
    """With wait_timeout=2 and 3 s of idleness, 100 queries at once all succeed."""
    options: dict[str, Any] = {
        "init_command": "SET SESSION wait_timeout = 2",
        "min_size": 4,
        "max_size": 8,
    }
    async with Database(mysql_url, **options) as db:
        assert await asyncio.gather(*(db.fetch_val("SELECT 1") for _ in range(20))) == [1] * 20
        await asyncio.sleep(3)
        results = await asyncio.gather(
            *(db.fetch_val("SELECT :n", {"n": n}) for n in range(100)), return_exceptions=True
        )
        assert results == list(range(100))


@pytest.mark.timeout(30)
async def test_held_connection_idle_past_wait_timeout_reconnects(mysql_url: str) -> None:
    """A connection held (outside a transaction) past wait_timeout reconnects on its next query."""
    db = Database(mysql_url, init_command="SET SESSION wait_timeout = 1")
    async with db, db.connection() as connection:
        assert await connection.fetch_val("SELECT 1") == 1
        await asyncio.sleep(2)
        assert await connection.fetch_val("SELECT 2") == 2


@pytest.mark.timeout(30)
async def test_task_cancelled_inside_a_savepoint_ends_cancelled_and_keeps_nothing(
    mysql: Database, mysql_url: str
) -> None:
    """Cancelled mid-query inside a nested transaction: the task ends cancelled (not with an
    error about the lost connection), and neither level's writes are kept."""
    started = asyncio.Event()
    async with Database(mysql_url, max_size=1) as db:

        async def nested() -> None:
            async with db.transaction():
                await db.execute(notes.insert(), {"text": "outer", "completed": False})
                async with db.transaction():
                    await db.execute(notes.insert(), {"text": "inner", "completed": False})
                    started.set()
                    await db.fetch_val("SELECT SLEEP(10)")

        task = asyncio.create_task(nested())
        await started.wait()
        await asyncio.sleep(0.2)
        task.cancel()
        await asyncio.wait([task])
        assert task.cancelled(), task.exception()
        assert await db.fetch_val("SELECT 1") == 1
    assert await count_rows(mysql, notes) == 0


@pytest.mark.timeout(30)
async def test_transaction_whose_connection_was_killed_fails_clearly(
    mysql: Database, mysql_url: str
) -> None:
    """A connection killed inside a transaction raises OperationalError, never runs on."""
    async with Database(mysql_url, max_size=1) as db:

        async def insert_kill_insert() -> None:
            async with db.transaction():
                await db.execute(notes.insert(), {"text": "lost", "completed": False})
                victim = await _own_thread_id(db.connection())
                await mysql.execute(f"KILL {victim}")
                await asyncio.sleep(0.1)
                await db.execute(notes.insert(), {"text": "never", "completed": False})

        with pytest.raises(aiodatabases.OperationalError):
            await insert_kill_insert()
        assert await db.fetch_val("SELECT 1") == 1
    assert await count_rows(mysql, notes) == 0


@pytest.mark.timeout(30)
async def test_killed_pool_connections_are_replaced_without_errors(
    mysql: Database, mysql_url: str
) -> None:
    """Every idle pooled connection killed by the server: the next queries all succeed."""
    async with Database(mysql_url, min_size=4, max_size=4) as db:
        ids = await asyncio.gather(*(_held_thread_id(db) for _ in range(4)))
        for thread_id in set(ids):
            await mysql.execute(f"KILL {thread_id}")
        await asyncio.sleep(0.2)
        results = await asyncio.gather(*(db.fetch_val("SELECT :n", {"n": n}) for n in range(64)))
        assert results == list(range(64))


@pytest.mark.timeout(60)
async def test_connections_killed_under_load_lose_no_acknowledged_write(
    mysql: Database, mysql_url: str
) -> None:
    """All pool connections killed twice under 64-task load: every acknowledged insert is
    stored, each event fails at most pool-size requests, no request waits over 5 s."""
    max_size = 8
    acknowledged: list[str] = []
    failures: list[float] = []
    slowest = 0.0
    seen_ids: set[int] = set()
    loop = asyncio.get_running_loop()
    stop = loop.time() + 3
    async with Database(mysql_url, max_size=max_size, pool_timeout=10) as db:

        async def writer(number: int) -> None:
            nonlocal slowest
            step = 0
            while loop.time() < stop:
                step += 1
                started = loop.time()
                try:
                    async with db.connection() as connection:
                        seen_ids.add(await _own_thread_id(connection))
                        text = f"{number}-{step}"
                        await connection.execute(notes.insert(), {"text": text, "completed": False})
                    acknowledged.append(text)
                except aiodatabases.OperationalError:
                    failures.append(loop.time())
                slowest = max(slowest, loop.time() - started)

        async def kill_all_twice() -> None:
            for _ in range(2):
                await asyncio.sleep(1)
                for thread_id in set(seen_ids):
                    with contextlib.suppress(aiodatabases.OperationalError):
                        await mysql.execute(f"KILL {thread_id}")

        await asyncio.gather(*(writer(n) for n in range(64)), kill_all_twice())
        assert db.pool_stats().size <= max_size
        assert len(seen_ids) > max_size, "no connection was killed: the test tested nothing"
    stored = {row.text for row in await mysql.fetch_all(select(notes.c.text))}
    assert set(acknowledged) <= stored
    assert len(failures) <= 2 * max_size
    assert slowest < 5


async def _held_thread_id(database: Database) -> int:
    async with database.connection() as connection:
        thread_id = await _own_thread_id(connection)
        await asyncio.sleep(0.05)
        return thread_id


@pytest.mark.timeout(30)
async def test_pool_recycle_replaces_old_connections(mysql_url: str) -> None:
    """A connection older than pool_recycle is replaced before its next use."""
    async with Database(mysql_url, max_size=1, pool_recycle=0.3) as db:
        first = await _held_thread_id(db)
        await asyncio.sleep(0.5)
        assert await _held_thread_id(db) != first


# -- iterate ---------------------------------------------------------------------------------


@pytest.mark.timeout(30)
async def test_queries_inside_iterate_over_many_rows_see_every_row(mysql: Database) -> None:
    """Iterating 3,000 rows with a query per row on the same connection yields all, in order."""
    await mysql.execute_many(
        notes.insert(), [{"text": f"n{i:05d}", "completed": False} for i in range(3000)]
    )
    seen: list[str] = []
    async with mysql.connection() as connection:
        async for row in connection.iterate(notes.select().order_by(notes.c.id)):
            if row.id % 100 == 1:
                assert await connection.fetch_val(select(notes.c.text).where(notes.c.id == row.id))
            seen.append(row.text)
    assert seen == [f"n{i:05d}" for i in range(3000)]


@pytest.mark.timeout(30)
async def test_leaving_iterate_early_inside_a_transaction_keeps_the_transaction(
    mysql: Database, mysql_url: str
) -> None:
    """Breaking out of a long iterate() in a transaction drains the rest; the block commits."""
    await mysql.execute_many(
        notes.insert(), [{"text": f"n{i}", "completed": False} for i in range(20_000)]
    )
    async with Database(mysql_url, max_size=1) as db:
        async with db.transaction():
            async for _ in db.iterate(notes.select()):
                break
            await db.execute(users.insert(), {"name": "kept"})
        assert await count_rows(db, users) == 1
        for _ in range(3):
            async for _ in db.iterate(notes.select()):
                break
        assert await count_rows(db, notes) == 20_000


# -- transactions ----------------------------------------------------------------------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("isolation", "sees_commit"), [("read_committed", True), ("repeatable_read", False)]
)
async def test_isolation_level_is_applied(
    mysql: Database, mysql_url: str, isolation: str, sees_commit: bool
) -> None:
    """read_committed sees another connection's commit mid-transaction; repeatable_read not."""
    async with Database(mysql_url) as db, db.transaction(isolation=isolation):
        assert await count_rows(db, notes) == 0
        await mysql.execute(notes.insert(), {"text": "other", "completed": True})
        assert await count_rows(db, notes) == (1 if sees_commit else 0)


async def test_readonly_transaction_refuses_writes(mysql: Database) -> None:
    """transaction(readonly=True) runs START TRANSACTION READ ONLY: a write is refused."""
    with pytest.raises(aiodatabases.DatabaseError):
        async with mysql.transaction(readonly=True):
            await mysql.execute(notes.insert(), {"text": "no", "completed": False})
    assert await count_rows(mysql, notes) == 0


async def test_deferrable_transaction_is_refused_by_name(mysql: Database) -> None:
    """deferrable=True is PostgreSQL-only and refused clearly rather than ignored."""
    with pytest.raises(aiodatabases.ConfigurationError, match="deferrable"):
        async with mysql.transaction(deferrable=True):
            pass


async def test_failed_execute_many_inside_a_transaction_undoes_only_itself(
    mysql: Database,
) -> None:
    """A failing execute_many in a transaction rolls back its own rows, not earlier ones."""
    async with mysql.transaction():
        await mysql.execute(pair_a.insert(), {"key": 1})
        with pytest.raises(aiodatabases.IntegrityError):
            await mysql.execute_many(pair_a.insert(), [{"key": 2}, {"key": 1}])
        await mysql.execute(pair_a.insert(), {"key": 3})
    assert [row.key for row in await mysql.fetch_all(select(pair_a.c.key))] == [1, 3]


# -- errors ----------------------------------------------------------------------------------


async def test_integrity_error_is_also_the_drivers_class_with_sqlstate(mysql: Database) -> None:
    """A duplicate key is aiodatabases.IntegrityError and asyncmy's, with errno and SQLSTATE."""
    await mysql.execute(users.insert(), {"name": "ada"})
    with pytest.raises(aiodatabases.IntegrityError) as info:
        await mysql.execute(users.insert(), {"name": "ada"})
    error: object = info.value
    assert isinstance(error, asyncmy.errors.IntegrityError)
    assert error.args[0] == 1062
    assert error.sqlstate == "23000"


@pytest.mark.timeout(30)
async def test_deadlock_is_an_operational_error(mysql: Database, mysql_url: str) -> None:
    """MariaDB's deadlock (1213) is raised as OperationalError with SQLSTATE 40001."""
    await mysql.execute_many(counters.insert(), [{"id": 1, "value": 0}, {"id": 2, "value": 0}])
    both_locked = asyncio.Barrier(2)

    async def cross(first: int, second: int) -> None:
        async with Database(mysql_url, max_size=1) as db, db.transaction():
            await db.execute(counters.update().where(counters.c.id == first), {"value": 1})
            await both_locked.wait()
            await db.execute(counters.update().where(counters.c.id == second), {"value": 1})

    results = await asyncio.gather(cross(1, 2), cross(2, 1), return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(errors) == 1, results
    error: object = errors[0]
    assert isinstance(error, aiodatabases.OperationalError)
    assert error.args[0] == 1213
    assert error.sqlstate == "40001"
    driver_view: object = errors[0]
    assert isinstance(driver_view, asyncmy.errors.OperationalError)


@pytest.mark.timeout(30)
async def test_lock_wait_timeout_is_an_operational_error(mysql: Database, mysql_url: str) -> None:
    """A lock wait timeout (1205) is an OperationalError."""
    await mysql.execute(counters.insert(), {"id": 1, "value": 0})
    async with (
        Database(mysql_url, init_command="SET SESSION innodb_lock_wait_timeout = 1") as waiter,
        mysql.transaction(),
    ):
        await mysql.execute(counters.update().where(counters.c.id == 1), {"value": 1})
        with pytest.raises(aiodatabases.OperationalError) as info:
            await waiter.execute(counters.update().where(counters.c.id == 1), {"value": 2})
        assert info.value.args[0] == 1205


class _Color(str, enum.Enum):  # noqa: UP042  # the mixin form (str() is "_Color.RED") is the case
    """A str-mixin enum, bound by its value."""

    RED = "red"


async def test_unbindable_value_is_refused_but_text_like_values_bind(mysql: Database) -> None:
    """object() is refused, not sent as its repr; a UUID binds as its text, an enum its value."""
    with pytest.raises(aiodatabases.ProgrammingError, match="object"):
        await mysql.fetch_val("SELECT :value", {"value": object()})
    token = uuid.UUID(int=7)
    assert await mysql.fetch_val("SELECT :value", {"value": token}) == str(token)
    assert await mysql.fetch_val("SELECT :value", {"value": _Color.RED}) == "red"
    assert await mysql.fetch_val("SELECT 3 IN :values", {"values": (1, 2, 3)}) == 1


# -- types and SQL -----------------------------------------------------------------------------


async def test_insert_returning_works_on_mariadb(mysql: Database) -> None:
    """INSERT ... RETURNING (MariaDB 10.5+) gives the returned value."""
    query = notes.insert().returning(notes.c.id, notes.c.text)
    assert await mysql.execute(query, {"text": "r", "completed": False}) == 1


async def test_percent_signs_with_concat(mysql: Database) -> None:
    """Literal percent signs survive next to parameters (CONCAT, as MySQL has no ||)."""
    assert await mysql.fetch_val("SELECT CONCAT('100%', :s)", {"s": "!"}) == "100%!"
    assert await mysql.fetch_val("SELECT CONCAT(:v, '%%')", {"v": "50"}) == "50%%"
    assert await mysql.fetch_val(sqlalchemy.text("SELECT '%s'")) == "%s"


async def test_aware_datetime_is_stored_as_naive_utc(mysql: Database) -> None:
    """DateTime(timezone=True) stores UTC; raw SQL reads the naive UTC value with microseconds."""
    plus_two = dt.timezone(dt.timedelta(hours=2))
    stored = dt.datetime(2024, 5, 6, 12, 0, 0, 250, tzinfo=plus_two)
    await mysql.execute(kitchen_sink.insert(), {"aware": stored})
    raw = await mysql.fetch_val("SELECT aware FROM kitchen_sink")
    assert raw == dt.datetime(2024, 5, 6, 10, 0, 0, 250)
    core = await mysql.fetch_val(select(kitchen_sink.c.aware))
    assert core == stored
    assert core.tzinfo is dt.UTC


async def test_time_reads_as_time_through_core_and_timedelta_raw(mysql: Database) -> None:
    """A Time column converts MySQL's timedelta to a time for Core; raw SQL keeps the driver's."""
    await mysql.execute(kitchen_sink.insert(), {"time": dt.time(1, 2, 3, 4)})
    assert await mysql.fetch_val(select(kitchen_sink.c.time)) == dt.time(1, 2, 3, 4)
    raw = await mysql.fetch_val("SELECT time FROM kitchen_sink")
    assert raw == dt.timedelta(hours=1, minutes=2, seconds=3, microseconds=4)


async def test_generic_types_render_lossless_ddl(mysql: Database) -> None:
    """String without length, Text, LargeBinary and DateTime keep big values and microseconds."""
    scratch = sqlalchemy.Table(
        "scratch_types",
        sqlalchemy.MetaData(),
        sqlalchemy.Column("id", sqlalchemy.Integer, primary_key=True),
        sqlalchemy.Column("s", sqlalchemy.String),
        sqlalchemy.Column("blob", sqlalchemy.LargeBinary),
        sqlalchemy.Column("at", sqlalchemy.DateTime),
    )
    await mysql.execute(DropTable(scratch, if_exists=True))
    await mysql.execute(CreateTable(scratch))
    try:
        value = {
            "s": "x" * 70_000,
            "blob": b"\0" * 70_000,
            "at": dt.datetime(2024, 1, 1, 0, 0, 1, 5),
        }
        await mysql.execute(scratch.insert(), value)
        row = await mysql.fetch_one(select(scratch.c.s, scratch.c.blob, scratch.c.at))
        assert row is not None
        assert dict(row) == value
    finally:
        await mysql.execute(DropTable(scratch))


async def test_numeric_and_json_round_trip(mysql: Database) -> None:
    """Numeric comes back as Decimal and JSON as Python objects from a Core select."""
    await mysql.execute(kitchen_sink.insert(), {"numeric": Decimal("1.5"), "payload": {"a": [1]}})
    row = await mysql.fetch_one(select(kitchen_sink.c.numeric, kitchen_sink.c.payload))
    assert row is not None
    assert row["numeric"] == Decimal("1.5000")
    assert row["payload"] == {"a": [1]}


# -- options -----------------------------------------------------------------------------------


async def test_update_counts_matched_rows_unless_found_rows_is_false(
    mysql: Database, mysql_url: str
) -> None:
    """An update that changes nothing counts its matched row; 0 with found_rows=false."""
    await mysql.execute(counters.insert(), {"id": 1, "value": 5})
    same = counters.update().where(counters.c.id == 1).values(value=5)
    assert await mysql.execute(same) == 1
    async with Database(f"{mysql_url}?found_rows=false") as changed:
        assert await changed.execute(same) == 0


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"autocommit": False}, "autocommit"),
        ({"ssl": "sometimes"}, "ssl"),
        ({"pool_recycle": "soon"}, "pool_recycle"),
        ({"min_size": 5, "max_size": 2}, "min_size"),
        ({"no_such_option": 1}, "no_such_option"),
    ],
)
async def test_bad_options_raise_configuration_error(
    mysql_url: str, options: dict[str, Any], named: str
) -> None:
    """Wrong or unknown options are refused by name before any connection is made."""
    with pytest.raises(aiodatabases.ConfigurationError, match=named):
        Database(mysql_url, **options)


async def test_asyncmy_scheme_and_raw_connection(mysql_url: str) -> None:
    """mysql+asyncmy:// works and raw_connection is the asyncmy connection."""
    url = mysql_url.replace("mysql://", "mysql+asyncmy://", 1)
    async with Database(url, ssl="false") as db, db.connection() as connection:
        assert isinstance(connection.raw_connection, asyncmy.Connection)
        assert await connection.fetch_val("SELECT 1") == 1


async def test_unix_socket_option_connects_through_the_socket(mysql: Database) -> None:
    """?unix_socket=/path connects through the server's Unix socket, not TCP."""
    path = await mysql.fetch_val("SELECT @@socket")
    if not isinstance(path, str) or not await asyncio.to_thread(Path(path).exists):
        pytest.skip("the server's Unix socket is not on this machine")
    url = f"mysql://root@localhost/{mysql.url.database}?unix_socket={path}"
    async with Database(url) as db, db.connection() as connection:
        assert connection.raw_connection.get_host_info() == "Localhost via UNIX socket"
        assert await connection.fetch_val("SELECT 1") == 1
