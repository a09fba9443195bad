"""PostgreSQL specifics: errors by SQLSTATE, parameter typing, sessions, cancellation, faults."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import random
import time
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information
import pytest
import sqlalchemy
from sqlalchemy import Float, Numeric, literal_column, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.schema import CreateTable, DropTable

import aiodatabases
from aiodatabases import Database

from ..conftest import env_urls, require_reachable
from .conftest import create_tables, drop_tables
from .helpers import Abort, count_from_outside, count_rows
from .tables import counters, kitchen_sink, notes, posts, users

_PG_URLS = [
    url for url in env_urls() if url.split(":", 1)[0].split("+")[0] in {"postgresql", "postgres"}
]

pytestmark = pytest.mark.skipif(
    not _PG_URLS, reason="no postgresql:// URL in AIODATABASES_TEST_URLS"
)


@pytest.fixture
def pg_url() -> str:
    """The first PostgreSQL URL under test."""
    url = _PG_URLS[0]
    require_reachable(url)
    return url


@pytest.fixture
async def pg(pg_url: str) -> AsyncIterator[Database]:
    """A connected PostgreSQL Database with every test table freshly created."""
    db = Database(pg_url)
    await db.connect()
    await create_tables(db)
    try:
        yield db
    finally:
        await drop_tables(db)
        await db.disconnect()


def _note(text: str) -> dict[str, object]:
    return {"text": text, "completed": False}


async def _pid(connection: aiodatabases.Connection) -> int:
    value = await connection.fetch_val("SELECT pg_backend_pid()")
    assert isinstance(value, int)
    return value


async def _wait_until_gone(observer: Database, pid: int, seconds: float = 5) -> bool:
    """Poll pg_stat_activity until the backend pid is gone; return whether it went."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not await observer.fetch_val(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = :pid", {"pid": pid}
        ):
            return True
        await asyncio.sleep(0.05)
    return False


# -- errors ---------------------------------------------------------------------------------


async def test_unique_violation_is_caught_as_asyncpg_and_aiodatabases_error(pg: Database) -> None:
    """A duplicate key is both asyncpg.UniqueViolationError and IntegrityError, with details."""
    await pg.execute(users.insert(), {"name": "ada"})
    with pytest.raises(asyncpg.UniqueViolationError) as info:
        await pg.execute(users.insert(), {"name": "ada"})
    error = info.value
    assert isinstance(error, aiodatabases.IntegrityError)
    assert error.sqlstate == "23505"
    assert getattr(error, "constraint_name", None) == "users_name_key"
    assert isinstance(error.__cause__, asyncpg.UniqueViolationError)


@pytest.mark.parametrize(
    ("sql", "expected", "sqlstate"),
    [
        ("SELECT 1 / 0", aiodatabases.DataError, "22012"),
        ("SELEC 1", aiodatabases.ProgrammingError, "42601"),
        ("SELECT * FROM no_such_table", aiodatabases.ProgrammingError, "42P01"),
        (
            "INSERT INTO posts (user_id, title) VALUES (999, 'x')",
            aiodatabases.IntegrityError,
            "23503",
        ),
        ("SELECT 'x'::int", aiodatabases.DataError, "22P02"),
    ],
    ids=["division-by-zero", "syntax", "missing-table", "foreign-key", "bad-cast"],
)
async def test_server_errors_map_by_sqlstate_class(
    pg: Database, sql: str, expected: type[Exception], sqlstate: str
) -> None:
    """Errors land in the STYLE.md tree by SQLSTATE class and keep their SQLSTATE."""
    with pytest.raises(expected) as info:
        await pg.execute(sql)
    assert isinstance(info.value, asyncpg.PostgresError)
    assert getattr(info.value, "sqlstate", None) == sqlstate
    assert await pg.fetch_val("SELECT 1") == 1


@pytest.mark.timeout(30)
async def test_serialization_failure_is_an_operational_error(pg: Database, pg_url: str) -> None:
    """A serializable transaction that lost a write race raises OperationalError 40001."""
    await pg.execute(counters.insert(), {"id": 1, "value": 0})

    async def lose_the_race(other: Database) -> None:
        async with pg.transaction(isolation="serializable"):
            await pg.fetch_val(select(counters.c.value).where(counters.c.id == 1))
            await other.execute(counters.update().values(value=5))
            await pg.execute(counters.update().values(value=counters.c.value + 1))

    async with Database(pg_url) as other:
        with pytest.raises(aiodatabases.OperationalError) as info:
            await lose_the_race(other)
    assert isinstance(info.value, asyncpg.SerializationError)
    assert info.value.sqlstate == "40001"
    assert await pg.fetch_val(select(counters.c.value)) == 5


# -- transactions ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("isolation", "shown"),
    [
        ("serializable", "serializable"),
        ("repeatable_read", "repeatable read"),
        ("read_committed", "read committed"),
        ("read_uncommitted", "read uncommitted"),
    ],
)
async def test_isolation_level_reaches_the_server(pg: Database, isolation: str, shown: str) -> None:
    """transaction(isolation=...) begins the transaction with that isolation level."""
    async with pg.transaction(isolation=isolation):
        assert await pg.fetch_val("SHOW transaction_isolation") == shown
    assert await pg.fetch_val("SHOW transaction_isolation") == "read committed"


async def test_readonly_deferrable_transaction_refuses_writes(pg: Database) -> None:
    """readonly=True and deferrable=True reach the server; a write inside is refused."""
    shown: list[object] = []

    async def write_in_readonly() -> None:
        async with pg.transaction(isolation="serializable", readonly=True, deferrable=True):
            shown.append(await pg.fetch_val("SHOW transaction_read_only"))
            shown.append(await pg.fetch_val("SHOW transaction_deferrable"))
            await pg.execute(notes.insert(), _note("refused"))

    with pytest.raises(aiodatabases.OperationalError) as info:
        await write_in_readonly()
    assert shown == ["on", "on"]
    assert info.value.sqlstate == "25006"
    assert await count_rows(pg, notes) == 0


async def test_sqlite_transaction_mode_is_refused_by_name(pg: Database) -> None:
    """transaction(mode="immediate") is a SQLite option: a ConfigurationError naming it."""
    with pytest.raises(aiodatabases.ConfigurationError, match="mode"):
        async with pg.transaction(mode="immediate"):
            pass


async def test_commit_after_a_failed_statement_raises_instead_of_losing_writes(
    pg: Database, pg_url: str
) -> None:
    """A block that swallowed a statement's error cannot commit: PostgreSQL rolled it back."""
    await pg.execute(users.insert(), {"name": "ada"})

    async def swallow_a_failure() -> None:
        async with pg.transaction():
            await pg.execute(users.insert(), {"name": "grace"})
            with pytest.raises(aiodatabases.IntegrityError):
                await pg.execute(users.insert(), {"name": "ada"})

    with pytest.raises(aiodatabases.OperationalError, match="rolled"):
        await swallow_a_failure()
    assert await count_from_outside(pg_url, users) == 1


# -- statements and types -------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        7,
        2**40,
        True,
        1.25,
        Decimal("3.14"),
        dt.date(2024, 2, 29),
        dt.datetime(2024, 5, 6, 12, 0, tzinfo=dt.UTC),
        dt.timedelta(hours=3),
        b"\x00\x01",
        "text",
        None,
    ],
    ids=lambda value: type(value).__name__,
)
async def test_raw_parameter_without_context_keeps_its_python_type(
    pg: Database, value: object
) -> None:
    """SELECT :value returns the value unchanged, though PostgreSQL would type it as text."""
    got = await pg.fetch_val("SELECT :value", {"value": value})
    assert got == value
    assert type(got) is type(value)


async def test_ambiguous_raw_parameters_work_inside_a_transaction(pg: Database) -> None:
    """:a * :b inside a transaction is typed without aborting the transaction."""
    async with pg.transaction():
        await pg.execute(notes.insert(), _note("kept"))
        assert await pg.fetch_val("SELECT :a * :b + :a", {"a": 6, "b": 7}) == 48
        await pg.execute(notes.insert(), _note("kept too"))
    assert await count_rows(pg, notes) == 2


async def test_raw_insert_returns_the_generated_primary_key(pg: Database) -> None:
    """A raw INSERT without RETURNING returns the key PostgreSQL generated, whatever it is."""
    await pg.execute(notes.insert(), {"id": 40, "text": "explicit", "completed": False})
    new_id = await pg.execute(
        "INSERT INTO notes (text, completed) VALUES (:text, :completed); -- trailing comment",
        _note("generated"),
    )
    stored = await pg.fetch_val("SELECT id FROM notes WHERE text = 'generated'")
    assert new_id == stored
    returned = await pg.execute(
        "INSERT INTO notes (text, completed) VALUES ('r', true) RETURNING text"
    )
    assert returned == "r"


async def test_raw_update_and_delete_return_row_counts(pg: Database) -> None:
    """Raw UPDATE and DELETE return the number of rows they changed, not None as in 0.9."""
    await pg.execute_many(notes.insert(), [_note("a"), _note("b"), _note("c")])
    assert await pg.execute("UPDATE notes SET completed = :done", {"done": True}) == 3
    assert await pg.execute("DELETE FROM notes WHERE text <> 'a'") == 2


async def test_json_is_decoded_by_the_column_type_and_raw_sql_sees_text(pg: Database) -> None:
    """A JSON column reads back as Python data through Core and as JSON text through raw SQL."""
    payload = {"k": [1, 2.5, None, "ü"]}
    await pg.execute(kitchen_sink.insert(), {"payload": payload})
    assert await pg.fetch_val(select(kitchen_sink.c.payload)) == payload
    text = await pg.fetch_val("SELECT payload FROM kitchen_sink")
    assert isinstance(text, str)
    assert json.loads(text) == payload


async def test_jsonb_column_round_trips(pg: Database) -> None:
    """A postgresql.JSONB column stores and returns nested Python data."""
    documents = sqlalchemy.Table(
        "documents",
        sqlalchemy.MetaData(),
        sqlalchemy.Column("id", sqlalchemy.Integer, primary_key=True),
        sqlalchemy.Column("body", JSONB),
    )
    await pg.execute(DropTable(documents, if_exists=True))
    await pg.execute(CreateTable(documents))
    try:
        body = {"a": {"b": [1, {"c": True}]}}
        key = await pg.execute(documents.insert(), {"body": body})
        row = await pg.fetch_one(select(documents).where(documents.c.id == key))
        assert row is not None
        assert row["body"] == body
        query = select(documents.c.id).where(documents.c.body["a"]["b"][0].as_integer() == 1)
        assert await pg.fetch_val(query) == key
    finally:
        await pg.execute(DropTable(documents))


async def test_numeric_and_float_types_convert_by_value(pg: Database) -> None:
    """Numeric over a float column gives Decimal; Float over a numeric column gives float."""
    as_decimal = select(literal_column("1.5::float8", Numeric(10, 2)))
    as_float = select(literal_column("2.25::numeric", Float()))
    assert await pg.fetch_val(as_decimal) == Decimal("1.50")
    assert type(await pg.fetch_val(as_decimal)) is Decimal
    assert await pg.fetch_val(as_float) == 2.25
    assert type(await pg.fetch_val(as_float)) is float


async def test_uuid_column_returns_plain_uuid_objects(pg: Database) -> None:
    """A Uuid column reads back as uuid.UUID itself, not asyncpg's subclass, as on SQLite."""
    value = await pg.fetch_val(select(sqlalchemy.cast(uuid.uuid4().hex, sqlalchemy.Uuid)))
    assert type(value) is uuid.UUID
    generated = await pg.fetch_val(select(literal_column("gen_random_uuid()", sqlalchemy.Uuid)))
    assert type(generated) is uuid.UUID


async def test_naive_datetime_in_an_aware_column_is_taken_as_utc(pg: Database) -> None:
    """As on SQLite, a naive value written to DateTime(timezone=True) means UTC."""
    naive = dt.datetime(2024, 5, 6, 12, 30)
    await pg.execute(kitchen_sink.insert(), {"aware": naive})
    assert await pg.fetch_val(select(kitchen_sink.c.aware)) == naive.replace(tzinfo=dt.UTC)


# -- sessions and the pool ------------------------------------------------------------------


@pytest.mark.timeout(30)
async def test_changed_session_state_is_reset_before_reuse(pg: Database, pg_url: str) -> None:
    """SET and session advisory locks do not leak to the next user of the connection."""
    async with Database(pg_url, max_size=1) as single:
        await single.execute("SET application_name = 'leaky'")
        await single.fetch_val("SELECT pg_advisory_lock(4242)")
        async with single.connection() as connection:
            assert await connection.fetch_val("SHOW application_name") == ""
        assert await pg.fetch_val("SELECT pg_try_advisory_lock(4242)") is True
        await pg.fetch_val("SELECT pg_advisory_unlock(4242)")


@pytest.mark.timeout(30)
async def test_plain_queries_reuse_the_connection_without_a_reset_round_trip(
    pg: Database, pg_url: str
) -> None:
    """After a plain query the server saw nothing more: no RESET ALL was sent on release."""
    async with Database(pg_url, max_size=1) as single:
        async with single.connection() as connection:
            pid = await _pid(connection)
        for number in range(20):
            assert await single.fetch_val("SELECT :n + 0", {"n": number}) == number
        last = await pg.fetch_val(
            "SELECT query FROM pg_stat_activity WHERE pid = :pid", {"pid": pid}
        )
        assert last == "SELECT $1 + 0"
        async with single.connection() as connection:
            assert await _pid(connection) == pid


@pytest.mark.timeout(30)
async def test_tasks_waiting_on_a_full_pool_get_released_connections_and_cancelled_ones_none(
    pg_url: str,
) -> None:
    """16 tasks on 2 connections are served by the same 2 sessions; waiters cancelled while
    every connection is held take none with them, and the others get theirs."""
    async with Database(pg_url, max_size=2, pool_timeout=10) as db:
        pids: list[int] = []

        async def work() -> None:
            for _ in range(20):
                pids.append(await db.fetch_val("SELECT pg_backend_pid()"))

        await asyncio.gather(*(work() for _ in range(16)))
        assert len(pids) == 320
        assert len(set(pids)) == 2

        gate = asyncio.Event()

        async def hold() -> None:
            async with db.connection():
                await gate.wait()

        holders = [asyncio.create_task(hold()) for _ in range(2)]
        await asyncio.sleep(0.1)
        assert db.pool_stats().in_use == 2
        waiters = [asyncio.create_task(db.fetch_val("SELECT :n + 0", {"n": n})) for n in range(5)]
        await asyncio.sleep(0.1)
        waiters[0].cancel()
        waiters[2].cancel()
        gate.set()
        await asyncio.gather(*holders)
        results = await asyncio.gather(*waiters, return_exceptions=True)
        assert [type(r) for r in results[::2]] == [asyncio.CancelledError] * 2 + [int]
        assert [results[1], results[3], results[4]] == [1, 3, 4]
        assert db.pool_stats().in_use == 0
        assert await db.fetch_val("SELECT 2") == 2


def _live_timers() -> int:
    loop = asyncio.get_running_loop()
    return sum(not handle.cancelled() for handle in loop._scheduled)  # type: ignore[attr-defined]


@pytest.mark.timeout(30)
async def test_callers_in_line_share_one_timer_and_each_times_out_at_its_own_deadline(
    pg_url: str,
) -> None:
    """40 callers waiting for the one connection arm one timer between them, not one each;
    callers arriving 0.1 s apart still fail with PoolTimeoutError at their own deadlines
    (pool_timeout after each one's arrival, not at the line's next periodic look), and a
    caller arriving after them is served once the connection comes back."""
    async with Database(pg_url, max_size=1, pool_timeout=0.6) as db:
        async with db.connection():
            before = _live_timers()
            crowd = [asyncio.create_task(db.fetch_val("SELECT 1")) for _ in range(40)]
            await asyncio.sleep(0.05)
            assert _live_timers() - before <= 1
            for task in crowd:
                task.cancel()
            await asyncio.gather(*crowd, return_exceptions=True)

            loop = asyncio.get_running_loop()
            failed_after: list[float] = []

            async def wait(arrival: float) -> None:
                with pytest.raises(aiodatabases.PoolTimeoutError):
                    await db.fetch_val("SELECT 1")
                failed_after.append(loop.time() - arrival)

            waiters = []
            for _ in range(3):
                waiters.append(asyncio.create_task(wait(loop.time())))
                await asyncio.sleep(0.1)
            await asyncio.gather(*waiters)
            # Each at its own deadline: the line's periodic look (every 0.25 s) alone would
            # have failed some of them up to 0.25 s late.
            assert all(0.6 <= after < 0.8 for after in failed_after), failed_after
            late = asyncio.create_task(db.fetch_val("SELECT 2"))
            await asyncio.sleep(0.05)
        assert await late == 2
        assert db.pool_stats().in_use == 0


@pytest.mark.timeout(30)
async def test_a_caller_in_line_when_the_database_disconnects_and_connects_again_is_served(
    pg_url: str,
) -> None:
    """disconnect() empties the line; a caller woken by it that finds the database connected
    again (its task ran only after connect()) is out of the line and keeps looking on its
    own, so it gets a connection once one is free instead of waiting for ever."""
    async with Database(pg_url, max_size=1, pool_timeout=5) as db:
        async with db.connection() as connection:
            await connection.fetch_val("SELECT 1")
            waiter = asyncio.create_task(db.fetch_val("SELECT 3"))
            await asyncio.sleep(0.05)
            backend: Any = db._backend
            # disconnect()'s first step, then a connect() before the woken caller runs: the
            # caller is out of the line and must find its way on its own.
            for ticket in list(backend._handoff):
                ticket.gone = True
                ticket.wake()
            backend._handoff.clear()
            await asyncio.sleep(0.3)  # past the line's look: only its own timer wakes it
        assert await asyncio.wait_for(waiter, 3) == 3


async def test_callers_of_a_busy_growing_pool_are_served_in_turn(pg_url: str) -> None:
    """64 tasks querying in a loop on a pool that grows from 1 to 4 connections, each
    yielding a few loop turns between its queries (as requests arriving from a network
    do): every task gets its turn, none is passed over while others go on.

    A caller woken by asyncpg's pool for a connection just put back could find it taken by
    a newcomer and then queue again behind everyone; under steady load, the first callers
    of a growing pool waited until the load stopped."""
    rng = random.Random(1)
    async with Database(pg_url, min_size=1, max_size=4, pool_timeout=30) as db:
        counts = [0] * 64
        total = 0

        async def work(index: int) -> None:
            nonlocal total
            while total < 64 * 60:
                assert await db.fetch_val("SELECT 1") == 1
                counts[index] += 1
                total += 1
                for _ in range(rng.randrange(3)):
                    await asyncio.sleep(0)

        await asyncio.gather(*(work(index) for index in range(64)))
        # Before, the first callers did about 0.75x the mean and others 1.4x.
        assert min(counts) >= 0.9 * 60, sorted(counts)
        assert max(counts) <= 1.1 * 60 + 1, sorted(counts)
        stats = db.pool_stats()
        assert (stats.size, stats.in_use) == (4, 0)  # it grew to max_size all the same


@pytest.mark.timeout(30)
class _PoolOpeningASlot:
    """asyncpg's pool with one idle connection and, on top of its queue, a slot whose
    connection was closed: the next ``acquire()`` opens a connection there (a handshake)."""

    def __init__(self) -> None:
        self.opened = asyncio.Event()
        self.cancelled = False

    def get_idle_size(self) -> int:
        return 1

    def get_size(self) -> int:
        return 1

    async def acquire(self) -> object:
        try:
            await asyncio.sleep(0.2)
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        self.opened.set()
        return object()


async def test_an_acquire_that_may_open_a_connection_outlives_its_cancelled_caller(
    pg_url: str,
) -> None:
    """A caller cancelled while asyncpg's pool opens a connection for it does not cancel the
    handshake (asyncpg would leave its future unread): the opening finishes."""
    async with Database(pg_url, max_size=2) as db:
        backend: Any = db._backend
        pool = _PoolOpeningASlot()
        caller = asyncio.create_task(backend._take(pool))
        await asyncio.sleep(0.05)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        await asyncio.wait_for(pool.opened.wait(), 5)
        assert not pool.cancelled


async def test_cancelled_query_stops_on_the_server_and_its_connection_is_closed(
    pg: Database, pg_url: str
) -> None:
    """A task cancelled mid-query: the statement stops, its session ends, the pool goes on."""
    async with Database(pg_url, max_size=1, pool_timeout=10) as single:
        async with single.connection() as connection:
            pid = await _pid(connection)
        task = asyncio.create_task(single.fetch_val("SELECT pg_sleep(30)"))
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await _wait_until_gone(pg, pid)
        async with single.connection() as connection:
            assert await _pid(connection) != pid
        assert single.pool_stats().in_use == 0


@pytest.mark.timeout(120)
async def test_cancelled_queries_never_return_another_requests_rows(pg_url: str) -> None:
    """2,000 token-echo queries, half cancelled mid-flight: every answer is its own token."""
    rng = random.Random(7)
    loop = asyncio.get_running_loop()
    mismatched: list[tuple[int, object]] = []
    async with Database(pg_url, max_size=8, pool_timeout=60) as db:

        async def echo(token: int) -> None:
            task = asyncio.current_task()
            assert task is not None
            if rng.random() < 0.5:
                loop.call_later(rng.uniform(0, 0.004), task.cancel)
            got = await db.fetch_val(
                "SELECT :token FROM pg_sleep(:pause)",
                {"token": token, "pause": rng.choice([0, 0.001, 0.002])},
            )
            if got != token:
                mismatched.append((token, got))

        results = await asyncio.gather(
            *(asyncio.create_task(echo(n)) for n in range(2000)), return_exceptions=True
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        assert all(isinstance(e, asyncio.CancelledError) for e in errors), errors[:3]
        assert 0 < len(errors) < len(results)
        assert mismatched == []
        assert db.pool_stats().in_use == 0
        follow_up = await asyncio.gather(*(db.fetch_val("SELECT :n", {"n": n}) for n in range(500)))
        assert follow_up == list(range(500))


@pytest.mark.timeout(30)
async def test_connection_idle_past_pre_ping_is_checked_then_reused(
    pg: Database, pg_url: str
) -> None:
    """A connection unused for longer than pre_ping gets a round-trip check and is kept."""
    async with Database(pg_url, max_size=1, pre_ping=0.05) as db:
        async with db.connection() as connection:
            pid = await _pid(connection)
        await asyncio.sleep(0.1)
        async with db.connection() as connection:
            assert await _pid(connection) == pid
        await pg.fetch_val("SELECT pg_terminate_backend(:pid)", {"pid": pid})
        await asyncio.sleep(0.1)
        assert await db.execute(notes.insert(), _note("after the kill")) == 1
    async with Database(pg_url, pre_ping="none") as never:
        assert await never.fetch_val("SELECT 1") == 1


@pytest.mark.timeout(30)
async def test_connection_killed_inside_a_transaction_fails_it_clearly(
    pg: Database, pg_url: str
) -> None:
    """A transaction whose session is killed raises OperationalError; the next one works."""
    async with Database(pg_url, max_size=1) as single:

        async def insert_kill_insert() -> None:
            async with single.transaction():
                await single.execute(notes.insert(), _note("lost"))
                async with single.connection() as connection:
                    pid = await _pid(connection)
                await pg.fetch_val("SELECT pg_terminate_backend(:pid)", {"pid": pid})
                await single.execute(notes.insert(), _note("never"))

        with pytest.raises(aiodatabases.OperationalError):
            await insert_kill_insert()
        async with single.transaction():
            await single.execute(notes.insert(), _note("kept"))
    assert await count_from_outside(pg_url, notes) == 1


# -- iterate --------------------------------------------------------------------------------


async def test_iterate_outside_a_transaction_leaves_none_open(pg: Database) -> None:
    """Finished or left early, iterate() leaves no transaction open on the connection."""
    await pg.execute_many(notes.insert(), [_note(f"n{n}") for n in range(600)])
    async with pg.connection() as connection:
        assert len([row async for row in connection.iterate(notes.select())]) == 600
        assert connection.raw_connection.is_in_transaction() is False
        async with contextlib.aclosing(connection.iterate(notes.select())) as rows:
            async for _ in rows:
                break
        assert await connection.fetch_val("SELECT 1") == 1
        assert connection.raw_connection.is_in_transaction() is False


async def test_writes_inside_an_iterate_loop_are_committed_even_when_left_early(
    pg: Database, pg_url: str
) -> None:
    """Rows written while iterating outside a transaction stay, as if each committed alone."""
    await pg.execute_many(counters.insert(), [{"id": n, "value": n} for n in range(1, 400)])
    async for row in pg.iterate(counters.select().order_by(counters.c.id)):
        await pg.execute(notes.insert(), _note(f"copy {row.value}"))
        if row.value == 300:
            break
    assert await count_from_outside(pg_url, notes) == 300


async def test_transaction_inside_an_iterate_loop_rolls_back_only_itself(
    pg: Database, pg_url: str
) -> None:
    """A transaction block inside iterate() commits or rolls back its own writes only."""
    await pg.execute_many(counters.insert(), [{"id": n, "value": n} for n in range(1, 5)])
    async for row in pg.iterate(counters.select().order_by(counters.c.id)):
        try:
            async with pg.transaction():
                await pg.execute(notes.insert(), _note(f"odd {row.value}"))
                if row.value % 2:
                    raise Abort
        except Abort:
            pass
    rows = await pg.fetch_all(select(notes.c.text).order_by(notes.c.id))
    assert [row.text for row in rows] == ["odd 2", "odd 4"]
    assert await count_from_outside(pg_url, notes) == 2


# -- options --------------------------------------------------------------------------------


def _with_query(url: str, query: str) -> str:
    parts = urlsplit(url)
    joined = f"{parts.query}&{query}" if parts.query else query
    return urlunsplit(parts._replace(query=joined))


@pytest.mark.parametrize("option", ["ssl=false", "sslmode=disable", "ssl=prefer"])
async def test_ssl_options_in_the_url_connect(pg_url: str, option: str) -> None:
    """ssl=false, sslmode=disable and a libpq mode are accepted in the URL."""
    async with Database(_with_query(pg_url, option)) as db:
        assert await db.fetch_val("SELECT 1") == 1


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"ssl": "sometimes"}, "ssl"),
        ({"record_class": dict}, "record_class"),
        ({"ssl": True, "sslmode": "require"}, "sslmode"),
    ],
    ids=["bad-ssl-mode", "unsupported-driver-option", "ssl-twice"],
)
def test_bad_options_raise_configuration_error(
    pg_url: str, options: dict[str, Any], named: str
) -> None:
    """A bad ssl mode or an asyncpg option the backend cannot honour is refused by name."""
    with pytest.raises(aiodatabases.ConfigurationError, match=named):
        Database(pg_url, **options)


async def test_driver_options_reach_asyncpg(pg_url: str) -> None:
    """server_settings and statement_cache_size=0 (for PgBouncer) are passed to asyncpg."""
    settings = {"application_name": "aiodatabases-test"}
    async with Database(pg_url, server_settings=settings, statement_cache_size=0) as db:
        for _ in range(3):
            assert await db.fetch_val("SHOW application_name") == "aiodatabases-test"
            assert await db.fetch_val("SELECT :n", {"n": 5}) == 5


def _socket_exists(directory: str) -> bool:
    return os.path.exists(os.path.join(directory, ".s.PGSQL.5432"))


async def test_unix_socket_directory_in_the_host_option(pg_url: str) -> None:
    """postgresql://user@/db?host=/var/run/postgresql connects over the Unix socket."""
    directory = "/var/run/postgresql"
    if not _socket_exists(directory):
        pytest.skip("no PostgreSQL socket in /var/run/postgresql")
    parts = urlsplit(pg_url)
    user = f"{parts.username}@" if parts.username else ""
    url = f"postgresql://{user}/{parts.path.lstrip('/')}?host={directory}"
    try:
        async with Database(url) as db:
            assert await db.fetch_val("SELECT inet_server_addr()") is None
    except aiodatabases.OperationalError as exc:
        pytest.skip(f"the socket refuses this user: {exc}")


async def test_pool_stats_count_held_and_idle_connections(pg_url: str) -> None:
    """pool_stats() counts connections held by tasks and idle ones."""
    async with Database(pg_url, min_size=1, max_size=3) as db:
        async with db.connection() as first, db.connection() as same:
            assert first is same
            await first.fetch_val("SELECT 1")
            assert db.pool_stats().in_use == 1
        stats = db.pool_stats()
        assert (stats.in_use, stats.max_size) == (0, 3)
        assert stats.idle >= 1


async def test_execute_many_posts_in_a_transaction_is_all_or_nothing(pg: Database) -> None:
    """execute_many inside a transaction: a failing row fails the call and the transaction."""
    await pg.execute(users.insert(), {"id": 1, "name": "ada"})
    rows = [{"user_id": 1, "title": "ok"}, {"user_id": 2, "title": "no such user"}]

    async def insert_then_fail() -> None:
        async with pg.transaction():
            await pg.execute(posts.insert(), {"user_id": 1, "title": "first"})
            await pg.execute_many(posts.insert(), rows)

    with pytest.raises(aiodatabases.IntegrityError):
        await insert_then_fail()
    assert await count_rows(pg, posts) == 0


@pytest.mark.timeout(30)
async def test_pool_and_command_timeouts_come_from_the_url_and_keywords_win(
    pg_url: str,
) -> None:
    """?pool_timeout= and ?command_timeout= set the two waits; a keyword overrides the URL."""
    url = _with_query(pg_url, "max_size=1&pool_timeout=0.2&command_timeout=0.3")
    loop = asyncio.get_running_loop()
    async with Database(url) as db:
        started = loop.time()
        with pytest.raises(aiodatabases.QueryTimeoutError):
            await db.fetch_val("SELECT pg_sleep(5)")
        assert loop.time() - started < 2
        async with db.connection() as connection:
            await connection.fetch_val("SELECT 1")
            started = loop.time()
            with pytest.raises(aiodatabases.PoolTimeoutError):
                await asyncio.create_task(db.fetch_val("SELECT 2"))
            assert loop.time() - started < 2
    async with Database(url, command_timeout=5) as db:
        assert await db.fetch_val("SELECT 3 FROM pg_sleep(0.5)") == 3


async def test_iterate_fetches_bounded_batches_not_the_whole_result(pg: Database) -> None:
    """Leaving iterate() after a few rows never computes the rest: a row far down the
    result that would fail is never reached, as it would be by fetching everything."""
    query = (
        "SELECT CASE WHEN n < 5000 THEN n ELSE n / (n - n) END AS n FROM generate_series(1, 5000) n"
    )
    seen = []
    async for row in pg.iterate(query):
        seen.append(row.n)
        if len(seen) == 1000:
            break
    assert seen == list(range(1, 1001))
    with pytest.raises(aiodatabases.DataError):
        await pg.fetch_all(query)
