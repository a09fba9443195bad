"""SQLite specifics: WAL, busy timeout, in-memory and shared-cache databases, driver classes."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import threading
import time
import uuid
from pathlib import Path

import aiosqlite
import pytest
from sqlalchemy import select
from sqlalchemy.schema import CreateTable

import aiodatabases
from aiodatabases import Database
from aiodatabases._pool import BARGE_WINDOW
from aiodatabases.backends.sqlite import SQLiteBackend, _Checkpointer, _WriterLock

from .helpers import count_rows
from .tables import kitchen_sink, notes, users


def _note(text: str) -> dict[str, object]:
    return {"text": text, "completed": False}


def _path_of(url: str) -> str:
    return url.split("sqlite:///", 1)[1]


async def test_file_database_runs_in_wal_mode(sqlite_database: Database) -> None:
    """A file database is switched to WAL journal mode."""
    assert str(await sqlite_database.fetch_val("PRAGMA journal_mode")).lower() == "wal"


@pytest.mark.timeout(30)
async def test_writer_within_busy_timeout_waits_for_the_lock_and_succeeds(
    sqlite_database: Database, sqlite_url: str
) -> None:
    """With timeout=10, a write blocked by another Database's transaction waits, then succeeds."""
    holder = await sqlite_database.transaction()
    await sqlite_database.execute(notes.insert(), _note("holding the write lock"))
    async with Database(sqlite_url, timeout=10) as patient:
        blocked = asyncio.create_task(patient.execute(notes.insert(), _note("waited")))
        await asyncio.sleep(0.3)
        assert not blocked.done()
        await holder.commit()
        await asyncio.wait_for(blocked, timeout=10)
        assert await count_rows(patient, notes) == 2


@pytest.mark.timeout(30)
async def test_short_busy_timeout_gives_locked_error_as_both_classes(
    sqlite_database: Database, sqlite_url: str
) -> None:
    """A writer blocked by another Database's transaction fails after `timeout` seconds."""
    holder = await sqlite_database.transaction()
    await sqlite_database.execute(notes.insert(), _note("holding the write lock"))
    try:
        async with Database(sqlite_url, timeout=0.2) as impatient:
            started = time.perf_counter()
            with pytest.raises(aiodatabases.OperationalError) as info:
                await impatient.execute(notes.insert(), _note("blocked"))
            waited = time.perf_counter() - started
    finally:
        await holder.rollback()
    assert isinstance(info.value, sqlite3.OperationalError)
    assert "locked" in str(info.value)
    assert 0.15 <= waited < 10


async def test_unique_violation_is_also_a_sqlite3_integrity_error(
    sqlite_database: Database,
) -> None:
    """Code written for databases 0.9 that catches sqlite3.IntegrityError keeps working."""
    await sqlite_database.execute(users.insert(), {"name": "ada"})
    with pytest.raises(sqlite3.IntegrityError) as info:
        await sqlite_database.execute(users.insert(), {"name": "ada"})
    assert isinstance(info.value, aiodatabases.IntegrityError)


async def test_syntax_error_is_also_a_sqlite3_operational_error(sqlite_database: Database) -> None:
    """A syntax error is catchable as sqlite3.OperationalError and aiodatabases.DatabaseError."""
    with pytest.raises(sqlite3.OperationalError) as info:
        await sqlite_database.fetch_all("SELEC 1")
    assert isinstance(info.value, aiodatabases.DatabaseError)


async def test_raw_connection_is_the_native_driver_connection(sqlite_database: Database) -> None:
    """Connection.raw_connection is the sqlite3 or aiosqlite connection underneath."""
    async with sqlite_database.connection() as connection:
        await connection.fetch_val("SELECT 1")
        raw = connection.raw_connection
    assert isinstance(raw, sqlite3.Connection | aiosqlite.Connection)


async def test_autocommitted_write_is_visible_to_stdlib_sqlite3(
    sqlite_database: Database, sqlite_url: str
) -> None:
    """A write outside a transaction is committed at once: another process-level reader sees it."""
    await sqlite_database.execute(notes.insert(), _note("visible"))
    with sqlite3.connect(_path_of(sqlite_url)) as reader:
        assert reader.execute("SELECT text FROM notes").fetchall() == [("visible",)]


async def test_idle_pooled_connections_hold_no_lock_or_snapshot(
    sqlite_database: Database, sqlite_url: str
) -> None:
    """Between queries, outside writers are not blocked and their rows are seen next query."""
    assert await count_rows(sqlite_database, notes) == 0
    writer = sqlite3.connect(_path_of(sqlite_url), timeout=0)
    try:
        writer.execute("INSERT INTO notes (text, completed) VALUES ('outside', 0)")
        writer.commit()
    finally:
        writer.close()
    assert await count_rows(sqlite_database, notes) == 1
    gathered = await asyncio.gather(*(count_rows(sqlite_database, notes) for _ in range(10)))
    assert gathered == [1] * 10


async def test_relative_path_is_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sqlite:///relative.db creates relative.db in the current directory."""
    monkeypatch.chdir(tmp_path)
    async with Database("sqlite:///relative.db") as database:
        await database.execute(CreateTable(notes))
        await database.execute(notes.insert(), _note("here"))
    assert (tmp_path / "relative.db").exists()


@pytest.mark.timeout(30)
async def test_in_memory_database_is_shared_by_calls_and_tasks() -> None:
    """sqlite:///:memory: keeps one database for all calls and tasks of that Database."""
    async with Database("sqlite:///:memory:") as database:
        await database.execute(CreateTable(notes))
        await database.execute(notes.insert(), _note("remembered"))
        assert await count_rows(database, notes) == 1
        counts = await asyncio.gather(*(count_rows(database, notes) for _ in range(20)))
        assert counts == [1] * 20
        async with database.transaction():
            await database.execute(notes.insert(), _note("in a transaction"))
        assert await asyncio.create_task(count_rows(database, notes)) == 2


async def test_two_in_memory_databases_are_separate() -> None:
    """Two Database("sqlite:///:memory:") objects each have their own private database."""
    async with Database("sqlite:///:memory:") as first, Database("sqlite:///:memory:") as second:
        await first.execute(CreateTable(notes))
        with pytest.raises(aiodatabases.DatabaseError):
            await second.fetch_all(notes.select())


@pytest.mark.timeout(30)
async def test_shared_cache_memory_database_with_uri_is_shared_between_databases() -> None:
    """sqlite:///file:NAME?mode=memory&cache=shared with uri=True is one database for both."""
    url = f"sqlite:///file:memdb_{uuid.uuid4().hex}?mode=memory&cache=shared"
    async with Database(url, uri=True) as first, Database(url, uri=True) as second:
        await first.execute(CreateTable(notes))
        await first.execute(notes.insert(), _note("shared"))
        rows = await second.fetch_all(notes.select())
        assert [row.text for row in rows] == ["shared"]
        counts = await asyncio.gather(*(count_rows(second, notes) for _ in range(10)))
        assert counts == [1] * 10


@pytest.mark.timeout(30)
async def test_file_memory_shared_cache_url_from_compat_works() -> None:
    """sqlite:///file::memory:?cache=shared with uri=True works across tasks."""
    async with Database("sqlite:///file::memory:?cache=shared", uri=True) as database:
        await database.execute("DROP TABLE IF EXISTS compat_shared")
        await database.execute("CREATE TABLE compat_shared (x INTEGER)")
        await database.execute_many(
            "INSERT INTO compat_shared (x) VALUES (:x)", [{"x": n} for n in range(5)]
        )
        totals = await asyncio.gather(
            *(database.fetch_val("SELECT sum(x) FROM compat_shared") for _ in range(10))
        )
        assert totals == [10] * 10
        await database.execute("DROP TABLE compat_shared")


@pytest.mark.timeout(30)
async def test_aiosqlite_scheme_runs_the_whole_api(tmp_path: Path) -> None:
    """sqlite+aiosqlite:// URLs query, iterate, batch and run transactions like sqlite://."""
    async with Database(f"sqlite+aiosqlite:///{tmp_path}/aio.db") as database:
        assert database.url.driver == "aiosqlite"
        await database.execute(CreateTable(notes))
        assert await database.execute(notes.insert(), _note("one")) == 1
        await database.execute_many(notes.insert(), [_note("two"), _note("three")])
        assert [row.text async for row in database.iterate(notes.select())] == [
            "one",
            "two",
            "three",
        ]
        transaction = await database.transaction()
        await database.execute(notes.insert(), _note("rolled back"))
        await transaction.rollback()
        assert await count_rows(database, notes) == 3
        assert str(await database.fetch_val("PRAGMA journal_mode")).lower() == "wal"


async def test_aiosqlite_scheme_in_memory() -> None:
    """sqlite+aiosqlite:///:memory: keeps its data between calls."""
    async with Database("sqlite+aiosqlite:///:memory:") as database:
        await database.execute(CreateTable(notes))
        await database.execute(notes.insert(), _note("kept"))
        assert await count_rows(database, notes) == 1


_COUNT_TO = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < :n) "
    "SELECT runs_on(), count(*) FROM c"
)


@pytest.mark.timeout(60)
async def test_a_statement_that_overran_once_comes_back_to_the_loop_after_quick_runs(
    sqlite_database: Database,
) -> None:
    """A statement that overran the loop's budget runs on a worker thread; after 16 quick runs
    in a row there it runs on the loop again, and a slow run on the thread starts the count
    over."""
    loop_thread = threading.get_ident()
    async with sqlite_database.connection() as conn:
        conn.raw_connection.create_function("runs_on", 0, threading.get_ident)

        async def where(n: int) -> str:
            row = await conn.fetch_one(_COUNT_TO, {"n": n})
            assert row is not None
            assert row[1] == n
            return "loop" if row[0] == loop_thread else "thread"

        async def quick_runs_until_the_loop() -> int:
            # Exactly 16 on a quiet machine; a quick run that a preempted process makes take
            # over 2.5 ms starts the count over, so a few more are allowed.
            for runs in range(64):
                if await where(1) == "loop":
                    return runs
            return 64

        assert await where(1) == "loop"
        # Large enough to overrun the 10 ms budget on any machine.
        assert await where(3_000_000) == "thread"
        assert 16 <= await quick_runs_until_the_loop() < 64

        # A slow run on the thread starts the count over.
        assert await where(3_000_000) == "thread"
        assert [await where(1) for _ in range(10)] == ["thread"] * 10
        assert await where(3_000_000) == "thread"
        assert 16 <= await quick_runs_until_the_loop() < 64


async def test_aware_datetime_column_reads_naive_text_as_utc_and_offsets_as_the_same_instant(
    sqlite_database: Database,
) -> None:
    """A DateTime(timezone=True) column stores UTC text; text written by something else reads
    back as the instant it names: naive text as UTC, text with an offset converted to UTC."""
    stored = dt.datetime(2024, 5, 6, 12, 0, 0, 250_000, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    await sqlite_database.execute(kitchen_sink.insert(), {"id": 1, "aware": stored})
    assert await sqlite_database.fetch_val("SELECT aware FROM kitchen_sink") == (
        "2024-05-06 10:00:00.250000"
    )
    await sqlite_database.execute(
        "INSERT INTO kitchen_sink (id, aware) VALUES (2, '2024-05-06 10:00:00'),"
        " (3, '2024-05-06T12:00:00+02:00'), (4, NULL)"
    )
    query = select(kitchen_sink.c.id, kitchen_sink.c.aware).order_by(kitchen_sink.c.id)
    got = {row["id"]: row["aware"] for row in await sqlite_database.fetch_all(query)}
    ten_utc = dt.datetime(2024, 5, 6, 10, 0, tzinfo=dt.UTC)
    assert got == {1: ten_utc.replace(microsecond=250_000), 2: ten_utc, 3: ten_utc, 4: None}
    assert all(value.tzinfo is dt.UTC for value in got.values() if value is not None)


def _wal_frames(path: str) -> int:
    """Frames in the WAL of ``path``, from the size of its file (a checkpoint to read the
    count would copy them); 0 when there is no WAL file."""
    try:
        size = Path(path + "-wal").stat().st_size
    except FileNotFoundError:
        return 0
    return max(size - 32, 0) // (4096 + 24)


def _sqlite_backend(database: Database) -> SQLiteBackend:
    backend = database._backend
    assert isinstance(backend, SQLiteBackend)
    return backend


async def _checkpoint_idle(database: Database) -> None:
    """Wait until no background checkpoint of ``database`` is running."""
    checkpointer = _sqlite_backend(database)._checkpointer
    assert checkpointer is not None
    task = checkpointer._task
    if task is not None:
        await asyncio.wait([task])


async def test_wal_checkpoints_run_on_a_worker_thread_and_keep_the_wal_bounded(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checkpoints run on their own connection, opened on a worker thread; SQLite's own (in a
    commit, on the loop) stays armed at ten times the threshold only as a safety net; under
    steady writes the WAL stays near the threshold instead of growing."""
    threads: list[threading.Thread] = []
    async with Database(sqlite_url, wal_autocheckpoint=40) as database:
        await database.execute("CREATE TABLE pages (id INTEGER PRIMARY KEY, body TEXT)")
        assert await database.fetch_val("PRAGMA wal_autocheckpoint") == 400
        backend = _sqlite_backend(database)
        connect_raw = backend._connect_raw

        def recording() -> sqlite3.Connection:
            threads.append(threading.current_thread())
            return connect_raw()

        monkeypatch.setattr(backend, "_connect_raw", recording)
        for n in range(600):  # each row fills a page of its own
            await database.execute("INSERT INTO pages (body) VALUES (:b)", {"b": f"{n:05}" * 800})
            # A service waits for requests between writes; a checkpoint's fsync needs the time.
            await asyncio.sleep(0.001)
        # The file keeps its largest size: no write found SQLite's own threshold crossed.
        assert _wal_frames(_path_of(sqlite_url)) < 400
        await _checkpoint_idle(database)
        assert threads
        assert threading.main_thread() not in threads
        assert await database.fetch_val("SELECT count(*) FROM pages") == 600
    # The last connection to close copied the WAL back and removed it.
    assert _wal_frames(_path_of(sqlite_url)) == 0
    with sqlite3.connect(_path_of(sqlite_url)) as reader:
        assert reader.execute("SELECT count(*) FROM pages").fetchone() == (600,)


async def test_concurrent_writers_and_readers_lose_nothing_to_background_checkpoints(
    sqlite_url: str,
) -> None:
    """Sixteen tasks writing and reading while checkpoints run every few writes: every row is
    there afterwards and the database passes SQLite's integrity check."""
    async with Database(sqlite_url, wal_autocheckpoint=8, max_size=4) as database:
        await database.execute("CREATE TABLE pages (id INTEGER PRIMARY KEY, body TEXT)")

        async def writer(task: int) -> None:
            for n in range(100):
                await database.execute(
                    "INSERT INTO pages (id, body) VALUES (:id, :b)",
                    {"id": task * 1000 + n, "b": "x" * 3000},
                )
                assert (
                    await database.fetch_val(
                        "SELECT count(*) FROM pages WHERE id = :id", {"id": task * 1000 + n}
                    )
                    == 1
                )

        await asyncio.gather(*(writer(task) for task in range(16)))
        await _checkpoint_idle(database)
    with sqlite3.connect(_path_of(sqlite_url)) as reader:
        assert reader.execute("SELECT count(*) FROM pages").fetchone() == (1600,)
        assert reader.execute("PRAGMA integrity_check").fetchone() == ("ok",)


async def test_wal_autocheckpoint_zero_turns_checkpoints_off(sqlite_url: str) -> None:
    """wal_autocheckpoint=0: neither SQLite nor the library checkpoints; the WAL keeps every
    write until the database is closed."""
    async with Database(sqlite_url, wal_autocheckpoint=0) as database:
        assert _sqlite_backend(database)._checkpointer is None
        assert await database.fetch_val("PRAGMA wal_autocheckpoint") == 0
        await database.execute("CREATE TABLE pages (id INTEGER PRIMARY KEY, body TEXT)")
        for _ in range(300):
            await database.execute("INSERT INTO pages (body) VALUES (:b)", {"b": "y" * 3000})
        assert _wal_frames(_path_of(sqlite_url)) >= 300


async def test_a_failing_background_checkpoint_is_logged_and_writes_go_on(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """If the checkpoint connection cannot be opened, a warning says so once, writes keep
    succeeding, and SQLite's own checkpoint (the safety net) bounds the WAL."""
    async with Database(sqlite_url, wal_autocheckpoint=10) as database:
        await database.execute("CREATE TABLE pages (id INTEGER PRIMARY KEY, body TEXT)")
        backend = _sqlite_backend(database)

        def broken() -> sqlite3.Connection:
            raise sqlite3.OperationalError("unable to open database file")

        monkeypatch.setattr(backend, "_connect_raw", broken)
        for _ in range(400):
            await database.execute("INSERT INTO pages (body) VALUES (:b)", {"b": "z" * 3000})
            await _checkpoint_idle(database)
        assert _wal_frames(_path_of(sqlite_url)) <= 100 + 5
        assert await database.fetch_val("SELECT count(*) FROM pages") == 400
    failures = [r for r in caplog.records if "background WAL checkpoint failed" in r.message]
    assert len(failures) == 1


async def test_a_checkpoint_kept_from_running_by_another_connection_is_tried_again(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite answers a checkpoint with "busy" while another connection's runs: that is no
    failure (the WAL is still a WAL); the next checkpoint runs after more writes."""
    answers: list[tuple[bool, int]] = []
    real_pass = _Checkpointer._pass

    async def first_busy(self: _Checkpointer) -> tuple[bool, int]:
        answer = (True, -1) if not answers else await real_pass(self)
        answers.append(answer)
        return answer

    monkeypatch.setattr(_Checkpointer, "_pass", first_busy)
    async with Database(sqlite_url, wal_autocheckpoint=16) as database:
        await database.execute("CREATE TABLE pages (id INTEGER PRIMARY KEY, body TEXT)")
        for _ in range(100):
            await database.execute("INSERT INTO pages (body) VALUES (:b)", {"b": "w" * 3000})
            await _checkpoint_idle(database)
        checkpointer = _sqlite_backend(database)._checkpointer
        assert checkpointer is not None
        assert not checkpointer._failed
    assert answers[0] == (True, -1)
    assert any(frames > 0 for busy, frames in answers[1:] if not busy)


@pytest.mark.parametrize("value", ["-1", "many"])
def test_wal_autocheckpoint_must_be_a_page_count(sqlite_url: str, value: str) -> None:
    """A negative or non-numeric wal_autocheckpoint is refused when the Database is made."""
    with pytest.raises(aiodatabases.ConfigurationError, match="wal_autocheckpoint"):
        Database(f"{sqlite_url}?wal_autocheckpoint={value}")


async def test_cache_size_is_set_on_every_pooled_connection(sqlite_url: str) -> None:
    """cache_size (KiB when negative, as SQLite's PRAGMA) reaches each connection of the pool;
    without it SQLite's own default stands."""
    async with Database(f"{sqlite_url}?cache_size=-512", max_size=3) as database:
        answers: list[int] = []
        entered = asyncio.Event()
        release = asyncio.Event()

        async def hold() -> None:
            async with database.connection() as connection:
                answers.append(await connection.fetch_val("PRAGMA cache_size"))
                if len(answers) == 3:
                    entered.set()
                await release.wait()

        tasks = [asyncio.create_task(hold()) for _ in range(3)]
        await entered.wait()
        assert database.pool_stats().in_use == 3
        release.set()
        await asyncio.gather(*tasks)
        assert answers == [-512, -512, -512]
    async with Database(sqlite_url) as database:
        with sqlite3.connect(":memory:") as plain:
            default = plain.execute("PRAGMA cache_size").fetchone()[0]
        assert await database.fetch_val("PRAGMA cache_size") == default


def test_cache_size_must_be_an_integer(sqlite_url: str) -> None:
    """A cache_size that is not an integer is refused when the Database is made."""
    with pytest.raises(aiodatabases.ConfigurationError, match="cache_size"):
        Database(f"{sqlite_url}?cache_size=big")


async def test_writer_lock_lets_a_running_task_take_it_while_no_waiter_is_overdue() -> None:
    """Released with a waiter that has waited under the barge window, the lock is free for
    whoever asks first; the waiter, woken, takes it when it is free again."""
    lock = _WriterLock()
    assert lock.try_acquire()
    waiter = asyncio.create_task(lock.acquire(None))
    await asyncio.sleep(0)
    lock.release()
    assert lock.try_acquire()  # a running task's next write, before the waiter runs
    await asyncio.sleep(0)
    assert not waiter.done()  # it ran, found the lock taken, and queued again
    lock.release()
    await asyncio.wait_for(waiter, 1)
    assert lock.locked()
    lock.release()
    assert not lock.locked()


async def test_writer_lock_goes_to_an_overdue_waiter_first() -> None:
    """Once the longest waiter has waited past the barge window, a release hands the lock to
    it, in arrival order, and running tasks wait their turn."""
    lock = _WriterLock()
    assert lock.try_acquire()
    order: list[int] = []

    async def write(n: int) -> None:
        await lock.acquire(None)
        order.append(n)
        lock.release()

    waiters = [asyncio.create_task(write(n)) for n in range(3)]
    await asyncio.sleep(0)
    await asyncio.sleep(BARGE_WINDOW * 1.5)
    lock.release()
    assert lock.locked()  # handed over already
    assert not lock.try_acquire()
    await asyncio.wait_for(asyncio.gather(*waiters), 1)
    assert order == [0, 1, 2]
    assert not lock.locked()


async def _cancel_then_the_next_gets_it(
    lock: _WriterLock, reached: asyncio.Task[None], next_waiter: asyncio.Task[None]
) -> None:
    """Cancel ``reached`` (which a release has just reached); ``next_waiter`` must get the lock,
    which is then released."""
    reached.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reached
    await asyncio.wait_for(next_waiter, 1)
    assert lock.locked()
    lock.release()


async def test_writer_lock_times_out_and_passes_on_what_a_cancelled_waiter_got() -> None:
    """A wait past its timeout raises TimeoutError and leaves the queue; a waiter cancelled
    just after the lock was handed to it passes the lock on instead of keeping it."""
    lock = _WriterLock()
    assert lock.try_acquire()
    with pytest.raises(TimeoutError):
        await lock.acquire(0.05)
    late = asyncio.create_task(lock.acquire(None))
    behind = asyncio.create_task(lock.acquire(None))
    await asyncio.sleep(BARGE_WINDOW * 1.5)
    lock.release()  # handed to `late`, which is cancelled before it runs
    await _cancel_then_the_next_gets_it(lock, late, behind)
    assert not lock.locked()
    assert lock.try_acquire()


async def test_writer_lock_passes_on_a_wake_up_its_waiter_cannot_use() -> None:
    """A waiter woken to try for the lock and cancelled before it runs wakes the next one, so
    no waiter sleeps while the lock is free."""
    lock = _WriterLock()
    assert lock.try_acquire()
    first = asyncio.create_task(lock.acquire(None))
    second = asyncio.create_task(lock.acquire(None))
    await asyncio.sleep(0)
    lock.release()  # within the barge window: `first` is only woken
    await _cancel_then_the_next_gets_it(lock, first, second)
