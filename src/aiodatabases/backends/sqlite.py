"""The SQLite backend: the stdlib ``sqlite3`` driven from the event loop, safely.

How a statement reaches SQLite decides the speed: a hop to a worker thread and back costs
tens of microseconds, an indexed lookup a few. So a statement first runs right on the event
loop with a progress handler armed; if it has not finished within a small budget
(``_BUDGET``), SQLite aborts it and it runs again on a worker thread, where it may take as
long as it needs without holding up the loop. A statement that needed the thread once goes
there directly from then on.

Aborting is only done where it loses nothing: a read, or a write outside any transaction of
the caller's (SQLite undoes the whole aborted statement). A write inside the caller's
transaction is never aborted — SQLite would roll back the entire transaction — so it runs on
a worker thread from the start.

Writers are serialized inside the process by a lock (``_WriterLock``), and transactions start with
``BEGIN IMMEDIATE``, so concurrent read-then-write transactions queue instead of failing with
"database is locked". Waiting for another process's lock happens on a worker thread.

WAL checkpoints (copying the log back into the database file, with an fsync) run on a worker
thread too (``_Checkpointer``), not inside whichever commit crosses SQLite's threshold: that
commit would otherwise hold the loop for the whole copy.

A read that runs on the loop is stepped by the C module ``_csqlite`` where it is built: the
sqlite3 module releases and retakes the GIL around every row it steps, which the loop's own
thread gains nothing from (see ``_csqlite.c`` for what it takes and what it leaves to the
sqlite3 module, which runs everything else, and runs again whatever it could not finish).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from math import inf
from typing import Any, TypeVar

from sqlalchemy.dialects.sqlite import base as sqlite_base
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.engine import processors as sa_processors
from sqlalchemy.sql import sqltypes

from .. import exceptions
from .._compiler import CompiledQuery, Compiler, Kind, Query
from .._pool import BARGE_WINDOW, Pool
from .._records import (
    Record,
    ResultMeta,
    as_utc,
    bool_to_int,
    sqlite_datetime,
    str_to_utc_datetime,
)
from .._url import DatabaseURL
from ._errors import combined_error
from ._groups import ALONE, GROUPABLE, Member, WriteGroups
from ._options import OptionReader
from .base import Backend, BackendConnection, PoolStats, TransactionOptions

__all__ = ["SQLiteBackend", "SQLiteConnection"]

T = TypeVar("T")
logger = logging.getLogger("aiodatabases.query")

# How long a statement may run on the event loop before it moves to a worker thread.
_BUDGET = 0.010
# How long the loop may run back-to-back statements before yielding to other tasks.
_BURST = 0.010
# A statement that overran the budget runs on a worker thread until this many runs in a row
# there took under a quarter of the budget; then it is tried on the loop again. One hiccup of
# the machine (a preempted process) thus does not send a quick statement to the thread for
# good, and a statement that is slow for some arguments only costs the loop one overrun per
# this many quick calls.
_SLOW_RUNS = 16
# VM instructions between two calls of the progress handler.
_PROGRESS_STEPS = 5_000
_ITERATE_BATCH = 256

# SQLite's own checkpoint is left armed at this multiple of the threshold, as a safety net
# should the background checkpoints fail or fall behind.
_CHECKPOINT_NET = 10

_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
_SQLITE_INTERRUPT = 9

_ISOLATION_LEVELS = {"serializable", "repeatable_read", "read_committed", "read_uncommitted"}
_MODES = {"deferred", "immediate", "exclusive"}


def _load_reader() -> Callable[[sqlite3.Connection], Any] | None:
    """The C reader's class when it is built and finds the sqlite3 module's library, else None."""
    if sys.implementation.name != "cpython" or os.environ.get("AIODATABASES_NO_EXTENSIONS"):
        return None  # it reads the handle out of CPython's connection object
    try:
        import _sqlite3

        from .. import _csqlite  # type: ignore[attr-defined]

        _csqlite.load(_sqlite3.__file__, sqlite3.sqlite_version, sqlite3.adapters)
    except (ImportError, OSError, AttributeError, TypeError) as exc:
        logger.debug("SQLite reads go through the sqlite3 module only: %s", exc)
        return None
    reader: Callable[[sqlite3.Connection], Any] = _csqlite.Reader
    return reader


_Reader = _load_reader()


class _DateTime(sqlite_base.DATETIME):
    """SQLite DATETIME that keeps time zones: aware values are stored as UTC and read back
    aware, so ``DateTime(timezone=True)`` behaves as on PostgreSQL."""

    def bind_processor(self, dialect: Any) -> Any:
        process = super().bind_processor(dialect)
        assert process is not None
        if self._storage_format == sqlite_base.DATETIME._storage_format:
            # The default storage format, rendered in C (same text, same errors).
            process = sqlite_datetime

        if not self.timezone:
            return process

        def to_utc(value: Any) -> Any:
            if isinstance(value, datetime) and value.tzinfo is not None:
                value = value.astimezone(UTC).replace(tzinfo=None)
            return process(value)

        return to_utc

    def result_processor(self, dialect: Any, coltype: Any) -> Any:
        process = super().result_processor(dialect, coltype)
        if not self.timezone:
            return process
        if process is sa_processors.str_to_datetime:
            # The default storage format: parsed and labelled UTC in one step.
            return str_to_utc_datetime

        def from_utc(value: Any) -> Any:
            value = process(value) if process is not None else value
            return as_utc(value) if isinstance(value, datetime) else value

        return from_utc


class _Boolean(sqltypes.Boolean):
    """Boolean whose bind conversion (``True`` -> 1) runs in C when the speedups are built."""

    def bind_processor(self, dialect: Any) -> Any:
        return bool_to_int


class SQLiteDialect(SQLiteDialect_pysqlite):
    """SQLAlchemy's pysqlite dialect with time-zone-aware DateTime and a faster Boolean."""

    colspecs = {
        **SQLiteDialect_pysqlite.colspecs,
        sqltypes.DateTime: _DateTime,
        sqltypes.Boolean: _Boolean,
    }


_ERROR_MAP: list[tuple[type[BaseException], type[exceptions.Error]]] = [
    (sqlite3.IntegrityError, exceptions.IntegrityError),
    (sqlite3.OperationalError, exceptions.OperationalError),
    (sqlite3.ProgrammingError, exceptions.ProgrammingError),
    (sqlite3.DataError, exceptions.DataError),
    (sqlite3.NotSupportedError, exceptions.NotSupportedError),
    (sqlite3.InterfaceError, exceptions.ProgrammingError),
    (sqlite3.Error, exceptions.DatabaseError),
]


def translate(exc: sqlite3.Error) -> BaseException:
    """Return the aiodatabases error for a sqlite3 error; the driver's class stays catchable."""
    ours: type[exceptions.Error] = exceptions.DatabaseError
    for driver_class, candidate in _ERROR_MAP:
        if isinstance(exc, driver_class):
            ours = candidate
            break
    cls = combined_error(ours, type(exc), "SQLite")
    new = cls(*exc.args)
    for attr in ("sqlite_errorcode", "sqlite_errorname"):
        if hasattr(exc, attr):
            try:
                setattr(new, attr, getattr(exc, attr))
            except AttributeError:
                pass
    if _error_code(exc) in _RETRYABLE_CODES:
        new.retryable = True  # type: ignore[attr-defined]  # set on every DatabaseError
    new.__cause__ = exc
    return new


# SQLITE_BUSY and SQLITE_LOCKED: another connection held the lock past the busy timeout.
_RETRYABLE_CODES = frozenset({5, 6})


class _Fallback(Exception):
    """Internal: the statement was stopped on the loop and must run on a worker thread."""

    def __init__(self, slow: bool) -> None:
        self.slow = slow


def _error_code(exc: sqlite3.Error) -> int:
    return getattr(exc, "sqlite_errorcode", 0) & 0xFF


class _SQLiteCursor:
    """A cursor over a query's rows, fetched in batches; see ``SQLiteConnection.cursor``."""

    def __init__(
        self, connection: SQLiteConnection, entry: CompiledQuery | None, sql: str, args: Any
    ) -> None:
        self._connection = connection
        self._entry = entry
        self._sql = sql
        self._args = args
        self._cursor: sqlite3.Cursor | None = None
        self._meta: ResultMeta | None = None

    async def fetch(self, size: int = _ITERATE_BATCH) -> list[Record]:
        """Return the next batch of records; empty when done."""
        conn = self._connection
        if self._cursor is None:

            def first() -> list[Any]:
                self._cursor = conn._raw.execute(self._sql, self._args)
                return self._cursor.fetchmany(size)

            readonly = self._entry.readonly if self._entry is not None else False
            rows = await conn._run(first, readonly, self._entry)
        else:
            cursor = self._cursor

            def more() -> list[Any]:
                return cursor.fetchmany(size)

            # Rows were handed out already, so the statement cannot be restarted: later
            # batches run where a long scan cannot hold up the loop.
            rows = await conn._run_in_thread(more, busy_wait=False)
        if self._meta is None:
            assert self._cursor is not None
            names = [d[0] for d in self._cursor.description or ()]
            self._meta = conn._compiler.meta_for(self._entry, names)
        return self._meta.records(rows, take=True)

    def close(self) -> None:
        """Finish the statement."""
        if self._cursor is not None:
            try:
                self._cursor.close()
            except sqlite3.Error:
                pass


class SQLiteConnection(BackendConnection):
    """One ``sqlite3`` connection; used by one task at a time (``Connection`` ensures it)."""

    def __init__(self, backend: SQLiteBackend, raw: sqlite3.Connection) -> None:
        self._backend = backend
        self._compiler = backend.compiler
        self._raw = raw
        self._limit = inf
        self._deadline = inf
        self._thread_took = 0.0  # seconds the last statement on a worker thread ran
        self._txn = False
        self._write_locked = False
        self._inflight: asyncio.Future[Any] | None = None
        raw.set_progress_handler(self._progress, _PROGRESS_STEPS)
        # Steps quick reads on this (the loop's) thread; see _csqlite.c. None: the sqlite3
        # module runs everything.
        self._reader = backend.new_reader(raw)

    def close(self) -> None:
        """Close the ``sqlite3`` connection (the reader's statements first)."""
        if self._reader is not None:
            self._reader.close()
        self._raw.close()

    def _progress(self) -> int:
        # Called by SQLite every _PROGRESS_STEPS instructions; non-zero aborts the statement.
        return 1 if time.perf_counter() > self._limit else 0

    @property
    def raw_connection(self) -> sqlite3.Connection:
        """The ``sqlite3.Connection``."""
        return self._raw

    @property
    def in_transaction(self) -> bool:
        """Whether a transaction is open."""
        return self._raw.in_transaction

    # -- running statements -----------------------------------------------------------------

    def _check_transaction(self) -> None:
        if self._txn and not self._raw.in_transaction:
            raise exceptions.OperationalError(
                "the transaction was rolled back by SQLite after an interrupted or failed "
                "statement; roll it back and run it again"
            )

    def _on_loop(self, job: Callable[[], T], abortable: bool) -> T:
        backend = self._backend
        start = time.perf_counter()
        timeout = backend.command_timeout
        deadline = start + timeout if timeout is not None else inf
        self._deadline = deadline
        self._limit = min(deadline, start + _BUDGET) if abortable else deadline
        try:
            return job()
        except sqlite3.OperationalError as exc:
            code = _error_code(exc)
            if code == _SQLITE_INTERRUPT and self._limit != inf:
                if time.perf_counter() >= deadline:
                    raise self._timeout_error() from None
                if abortable:
                    raise _Fallback(slow=True) from None
            if abortable and code in (_SQLITE_BUSY, _SQLITE_LOCKED):
                raise _Fallback(slow=False) from None
            raise
        finally:
            self._limit = inf

    def _timeout_error(self) -> exceptions.QueryTimeoutError:
        return exceptions.QueryTimeoutError(
            f"the statement ran longer than command_timeout={self._backend.command_timeout} s "
            "and was interrupted"
        )

    async def _run_in_thread(self, job: Callable[[], T], busy_wait: bool) -> T:
        backend = self._backend
        raw = self._raw
        timeout = backend.command_timeout
        busy_ms = int(backend.busy_timeout * 1000)

        def run() -> T:
            if busy_wait:
                raw.execute(f"PRAGMA busy_timeout = {busy_ms}")
            start = time.perf_counter()
            self._deadline = self._limit = start + timeout if timeout is not None else inf
            try:
                return job()
            finally:
                self._limit = inf
                self._thread_took = time.perf_counter() - start
                if busy_wait:
                    raw.execute("PRAGMA busy_timeout = 0")

        await self.wait_idle()
        future = asyncio.get_running_loop().run_in_executor(backend.executor, run)
        self._inflight = future
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            if not future.done():
                raw.interrupt()
                future.add_done_callback(_consume)
            raise
        except sqlite3.OperationalError as exc:
            if _error_code(exc) == _SQLITE_INTERRUPT and time.perf_counter() >= self._deadline:
                raise self._timeout_error() from None
            raise
        finally:
            if future.done():
                self._inflight = None

    async def wait_idle(self) -> None:
        """Wait until a statement left running by a cancelled call has stopped."""
        inflight = self._inflight
        if inflight is not None:
            if not inflight.done():
                await asyncio.wait([inflight])
            self._inflight = None

    async def _run(self, job: Callable[[], T], readonly: bool, entry: CompiledQuery | None) -> T:
        """Run ``job`` on the loop when that is safe and quick, else on a worker thread."""
        if self._txn:
            self._check_transaction()
            if not readonly:
                return await self._run_in_thread(job, busy_wait=True)
        backend = self._backend
        if backend.burst_expired():
            await asyncio.sleep(0)
        if self._inflight is not None:
            await self.wait_idle()
        if self._txn or readonly:
            return await self._attempt(job, entry)
        # A write outside a transaction: take the process-wide writer lock so that writers
        # queue here instead of failing with "database is locked".
        await backend.lock_writes()
        try:
            return await self._attempt(job, entry)
        finally:
            backend.unlock_writes()

    async def _attempt(self, job: Callable[[], T], entry: CompiledQuery | None) -> T:
        if entry is None or not entry.slow:
            try:
                return self._on_loop(job, abortable=True)
            except _Fallback as fallback:
                if fallback.slow and entry is not None:
                    entry.slow = _SLOW_RUNS
                return await self._run_in_thread(job, busy_wait=True)
        result = await self._run_in_thread(job, busy_wait=True)
        if self._thread_took < _BUDGET / 4:
            entry.slow = max(entry.slow - 1, 0)
        else:
            entry.slow = _SLOW_RUNS
        return result

    # -- the query API ----------------------------------------------------------------------

    async def fetch_all(self, query: Query, values: Mapping[str, Any] | None) -> list[Record]:
        """Run a query and return all its rows."""
        entry, sql, args = self._compiler.prepare(query, values)
        raw = self._raw
        readonly = entry.readonly if entry else False
        reader = self._reader if readonly else None

        def job() -> tuple[list[Any], Any]:
            if reader is not None:
                done = reader.fetch(sql, args, 0)
                if done is not None:
                    return done  # type: ignore[no-any-return]
            cursor = raw.execute(sql, args)
            description = cursor.description
            names = None if description is None else [d[0] for d in description]
            return cursor.fetchall(), names

        try:
            rows, names = await self._run(job, readonly, entry)
        except sqlite3.Error as exc:
            raise translate(exc) from None
        if names is None:
            return []
        return self._compiler.meta_for(entry, names).records(rows, take=True)

    async def fetch_one(self, query: Query, values: Mapping[str, Any] | None) -> Record | None:
        """Run a query and return its first row, or ``None``."""
        entry, sql, args = self._compiler.prepare(query, values)
        raw = self._raw
        readonly = entry.readonly if entry else False
        reader = self._reader if readonly else None

        def job() -> tuple[Any, Any]:
            if reader is not None:
                done = reader.fetch(sql, args, 1)
                if done is not None:
                    rows, names = done
                    return (rows[0] if rows else None), names
            cursor = raw.execute(sql, args)
            row = cursor.fetchone()
            if not readonly:
                cursor.fetchall()  # a write with RETURNING finishes only when fully stepped
            cursor.close()
            if row is None:
                return None, None
            return row, [d[0] for d in cursor.description]

        try:
            row, names = await self._run(job, readonly, entry)
        except sqlite3.Error as exc:
            raise translate(exc) from None
        if row is None:
            return None
        return self._compiler.meta_for(entry, names).record(row)

    async def fetch_val(
        self, query: Query, values: Mapping[str, Any] | None, column: Any = 0
    ) -> Any:
        """Run a query and return one value of its first row, or ``None``."""
        record = await self.fetch_one(query, values)
        if record is None:
            return None
        return record[column]

    async def execute(self, query: Query, values: Mapping[str, Any] | None) -> Any:
        """Run a statement; return the new row id, the changed-row count or a RETURNING value."""
        entry, sql, args = self._compiler.prepare(query, values)
        try:
            result = await self._run(self.execute_job(entry, sql, args), entry.readonly, entry)
        except sqlite3.Error as exc:
            raise translate(exc) from None
        return _returned(self._compiler, entry, result)

    def execute_job(self, entry: CompiledQuery, sql: str, args: Sequence[Any]) -> Callable[[], Any]:
        """The job of ``execute``: run the statement, return its ``_outcome``."""
        raw = self._raw
        kind = entry.kind

        def job() -> Any:
            return _outcome(raw.execute(sql, args), kind)

        return job

    def run_group(self, members: Sequence[Member]) -> list[Any] | None:
        """Run the statements of a group commit in one transaction, on the loop; return their
        ``_outcome``s once committed, or ``None`` (nothing committed) if any of them failed or
        ran over the budget: each is then run again on its own, as it would have been.

        The caller holds the writer lock. Nobody learns an outcome before COMMIT returned.
        """
        raw = self._raw

        def job() -> list[Any]:
            raw.execute("BEGIN IMMEDIATE")
            outcomes = [_outcome(raw.execute(m.sql, m.args), m.entry.kind) for m in members]
            raw.execute("COMMIT")
            return outcomes

        try:
            return self._on_loop(job, abortable=True)
        except Exception:
            # A failed statement, a constraint checked at COMMIT, the budget, another
            # process's lock: undo the whole group (SQLite may have done so already).
            if raw.in_transaction:
                try:
                    raw.execute("ROLLBACK")
                except sqlite3.Error:
                    pass  # the pool's reset() closes a connection still in a transaction
            return None

    async def execute_many(self, query: Query, values: Sequence[Mapping[str, Any]]) -> None:
        """Run a statement for every set of values in one ``executemany``, atomically."""
        if not values:
            return
        if isinstance(query, str):
            entry = self._compiler.text(query)
            sql = entry.sql
            rows: Sequence[Any] = self._compiler.text_many(entry, values)
        else:
            entry, compiled, extracted, _ = self._compiler.core(query, values[0], many=True)
            sql = entry.sql
            rows = self._compiler.core_many(entry, compiled, extracted, values)
        raw = self._raw
        in_txn = self._txn

        def job() -> None:
            # Atomic: all rows or none, inside the caller's transaction or in our own.
            if in_txn:
                raw.execute("SAVEPOINT aiodatabases_many")
            else:
                raw.execute("BEGIN IMMEDIATE")
            try:
                raw.executemany(sql, rows)
            except BaseException:
                if in_txn:
                    raw.execute("ROLLBACK TO SAVEPOINT aiodatabases_many")
                    raw.execute("RELEASE SAVEPOINT aiodatabases_many")
                elif raw.in_transaction:
                    raw.execute("ROLLBACK")
                raise
            if in_txn:
                raw.execute("RELEASE SAVEPOINT aiodatabases_many")
            else:
                raw.execute("COMMIT")

        try:
            await self._run(job, False, entry)
        except sqlite3.Error as exc:
            raise translate(exc) from None

    async def cursor(self, query: Query, values: Mapping[str, Any] | None) -> _SQLiteCursor:
        """Open a cursor whose rows are fetched in batches."""
        entry, sql, args = self._compiler.prepare(query, values)
        return _SQLiteCursor(self, entry, sql, args)

    # -- transactions -----------------------------------------------------------------------

    async def _control(self, sql: str) -> None:
        raw = self._raw

        def job() -> None:
            raw.execute(sql)

        if self._inflight is not None:
            await self.wait_idle()
        try:
            try:
                self._on_loop(job, abortable=False)
            except sqlite3.OperationalError as exc:
                if _error_code(exc) != _SQLITE_BUSY:
                    raise
                await self._run_in_thread(job, busy_wait=True)
        except sqlite3.Error as exc:
            raise translate(exc) from None

    async def begin(self, options: TransactionOptions) -> None:
        """Open a transaction: ``BEGIN IMMEDIATE`` unless it is read-only or told otherwise."""
        if options.isolation is not None and options.isolation not in _ISOLATION_LEVELS:
            raise exceptions.ConfigurationError(
                f"unknown isolation level {options.isolation!r}; use one of "
                f"{', '.join(sorted(_ISOLATION_LEVELS))} (SQLite always runs serializable)"
            )
        mode = (options.mode or ("deferred" if options.readonly else "immediate")).lower()
        if mode not in _MODES:
            raise exceptions.ConfigurationError(
                f"unknown SQLite transaction mode {mode!r}; use one of {', '.join(sorted(_MODES))}"
            )
        if self._raw.in_transaction:
            raise exceptions.TransactionStateError(
                "cannot begin(): a transaction is already open on this connection "
                "(opened with a raw BEGIN?); commit or roll it back first"
            )
        if mode != "deferred":
            await self._backend.lock_writes()
            self._write_locked = True
        try:
            await self._control(f"BEGIN {mode.upper()}")
            if options.readonly:
                await self._control("PRAGMA query_only = 1")
        except BaseException:
            self._end()
            raise
        self._txn = True

    def _end(self) -> None:
        if self._raw.in_transaction:
            try:
                self._raw.execute("ROLLBACK")
            except sqlite3.Error:
                logger.warning("rollback after a failed begin() failed", exc_info=True)
        if self._txn:
            try:
                self._raw.execute("PRAGMA query_only = 0")
            except sqlite3.Error:
                pass
        self._txn = False
        if self._write_locked:
            self._write_locked = False
            self._backend.unlock_writes()

    async def commit(self) -> None:
        """Commit the transaction."""
        self._check_transaction()
        await self._control("COMMIT")
        self._end()

    async def rollback(self) -> None:
        """Roll back the transaction."""
        await self.wait_idle()
        try:
            if self._raw.in_transaction:
                await self._control("ROLLBACK")
        finally:
            self._end()

    async def savepoint(self, name: str) -> None:
        """Open a savepoint."""
        self._check_transaction()
        await self._control(f"SAVEPOINT {name}")

    async def release_savepoint(self, name: str) -> None:
        """Release a savepoint, keeping its work."""
        self._check_transaction()
        await self._control(f"RELEASE SAVEPOINT {name}")

    async def rollback_to_savepoint(self, name: str) -> None:
        """Undo a savepoint's work and close it."""
        await self.wait_idle()
        self._check_transaction()
        await self._control(f"ROLLBACK TO SAVEPOINT {name}")
        await self._control(f"RELEASE SAVEPOINT {name}")

    # -- pool hooks ---------------------------------------------------------------------------

    def reset(self) -> bool:
        """Make the connection clean for its next user; ``False`` if it must be closed."""
        try:
            if self._raw.in_transaction or self._txn:
                self._end()
        except Exception:
            return False
        return not self._raw.in_transaction


def _outcome(cursor: sqlite3.Cursor, kind: int) -> Any:
    """What a statement run by ``execute`` left: RETURNING rows, a new row id or a count."""
    if cursor.description is not None:
        rows = cursor.fetchall()
        return ("rows", rows, cursor.description)
    if kind == Kind.INSERT:
        return cursor.lastrowid if cursor.rowcount != 0 else None
    return cursor.rowcount


def _returned(compiler: Compiler, entry: CompiledQuery, outcome: Any) -> Any:
    """What ``execute`` returns for a statement's ``_outcome``: the first RETURNING value."""
    if isinstance(outcome, tuple):
        _, rows, description = outcome
        if not rows:
            return None
        return compiler.meta_for(entry, [d[0] for d in description]).record(rows[0])[0]
    return outcome


def _consume(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class _WriterLock:
    """The process's writer lock: held by a write outside a transaction (never across an
    await, as it runs on the loop), by a write transaction, or by a checkpoint's last pass.

    Fair within a bound, like the pool: while the longest waiter has waited less than
    ``BARGE_WINDOW``, a released lock is free for whoever asks first, and the longest waiter is
    woken to ask too; once it has waited longer, the lock is handed to it, first come first
    served. ``asyncio.Lock`` hands out in arrival order only: after one long holder, every
    write of a busy loop queued behind the waiters that had gathered, and paid a task switch,
    so the queue never emptied while writes kept coming.
    """

    def __init__(self) -> None:
        self._held = False
        # (future, since): a future's result is True when the lock was handed to its waiter,
        # False when it was only woken to try.
        self._waiters: deque[tuple[asyncio.Future[bool], float]] = deque()

    def locked(self) -> bool:
        """Whether a writer holds the lock."""
        return self._held

    def _front(self) -> tuple[asyncio.Future[bool], float] | None:
        waiters = self._waiters
        while waiters and waiters[0][0].done():
            waiters.popleft()  # cancelled or timed out
        return waiters[0] if waiters else None

    def try_acquire(self) -> bool:
        """Take the lock if it is free and no waiter is overdue; never waits."""
        if self._held:
            return False
        front = self._front()
        if front is not None and time.monotonic() - front[1] >= BARGE_WINDOW:
            return False
        self._held = True
        return True

    async def acquire(self, timeout: float | None) -> None:  # noqa: ASYNC109  # the busy timeout
        """Take the lock, waiting up to ``timeout`` seconds (None: as long as it takes).

        Raises:
            TimeoutError: The lock did not come free in time.
        """
        if self.try_acquire():
            return
        loop = asyncio.get_running_loop()
        since = time.monotonic()
        deadline = None if timeout is None else loop.time() + timeout
        first = True
        while True:
            waiter: asyncio.Future[bool] = loop.create_future()
            entry = (waiter, since)
            if first:
                self._waiters.append(entry)
            else:
                self._waiters.appendleft(entry)  # woken too late: keep the place in the queue
            first = False
            try:
                async with asyncio.timeout_at(deadline):
                    handed = await waiter
            except BaseException:
                if not waiter.done():
                    waiter.cancel()
                elif not waiter.cancelled():
                    # Handed the lock, or woken to try, just as the wait ended: pass it on.
                    if waiter.result():
                        self.release()
                    elif not self._held:
                        self._wake()
                raise
            if handed:
                return
            if not self._held:
                self._held = True
                return

    def release(self) -> None:
        """Free the lock: hand it to an overdue waiter, else wake the longest one to try."""
        if not self._held:
            raise RuntimeError("the writer lock is not held")
        self._held = False
        self._wake()

    def _wake(self) -> None:
        front = self._front()
        if front is None:
            return
        self._waiters.popleft()
        if time.monotonic() - front[1] >= BARGE_WINDOW:
            self._held = True
            front[0].set_result(True)
        else:
            front[0].set_result(False)


class _Checkpointer:
    """Runs the WAL checkpoints of a file database on a worker thread, on its own connection.

    SQLite checkpoints inside the commit that finds the WAL over ``wal_autocheckpoint`` pages;
    on the loop, that commit holds every task for the copy and its fsync. Here the pool's
    connections leave that to this class (their own threshold stays armed, ten times higher, as
    a safety net) and every write ends with ``wrote()``. After enough writes a checkpoint runs
    in two ``PASSIVE`` passes on a worker thread: the first copies the bulk of the WAL while
    writers go on; the second, holding the process's writer lock, copies what they added
    meanwhile, so that the WAL is copied whole and the next write starts it over from the
    beginning instead of growing it. Only writers wait, and only for the second pass; the loop
    goes on serving everything else. The number of writes between two checkpoints adapts to
    the WAL frames a write has been adding, so that a checkpoint finds about ``pages`` frames.
    """

    def __init__(self, backend: SQLiteBackend, pages: int) -> None:
        self._backend = backend
        self._pages = pages
        self._every = max(pages // 8, 1)  # writes between checkpoints, until measured
        self._writes = 0
        self._raw: sqlite3.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._failed = False

    def wrote(self) -> None:
        """Count one write; start a checkpoint when enough have been made."""
        self._writes += 1
        if self._writes >= self._every and self._task is None and not self._failed:
            loop = self._backend._loop or asyncio.get_running_loop()
            self._task = loop.create_task(self._checkpoint(self._writes))

    async def _checkpoint(self, writes: int) -> None:
        # ``writes``: made since the WAL last started over, which wrote its ``frames``.
        lock = self._backend._write_lock
        try:
            busy, frames = await self._pass()
            if busy:
                # Another connection is checkpointing: try again after more writes.
                self._writes = 0
                return
            if frames > 0:
                await lock.acquire(None)
                try:
                    await self._pass()
                finally:
                    # The next write starts the WAL over: count from here.
                    self._writes = 0
                    lock.release()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # SQLite's own checkpoint (the safety net) keeps the WAL bounded from now on.
            self._failed = True
            logger.warning(
                "background WAL checkpoint failed; from now on SQLite checkpoints in commits, "
                "at %d pages",
                self._pages * _CHECKPOINT_NET,
                exc_info=exc,
            )
            return
        finally:
            self._task = None
        if frames < 0:
            self._failed = True  # not a WAL database: nothing to do
        elif frames > 0:
            per_write = frames / writes
            self._every = min(max(int(self._pages / per_write), 1), 100_000)

    async def _pass(self) -> tuple[bool, int]:
        """Run one PASSIVE checkpoint on a worker thread; return whether another connection's
        checkpoint kept it from running, and the frames in the WAL (-1: not in WAL mode)."""
        backend = self._backend

        def run() -> tuple[bool, int]:
            if self._raw is None:
                self._raw = backend._connect_raw()
            busy, frames, _ = self._raw.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            return bool(busy), int(frames)

        future = asyncio.get_running_loop().run_in_executor(backend.executor, run)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            # The thread cannot be stopped: let it finish before the connection may be closed.
            await asyncio.wait([future])
            raise

    async def close(self) -> None:
        """Stop checkpointing: end a running checkpoint, then close the connection."""
        task = self._task
        if task is not None:
            task.cancel()
            await asyncio.wait([task])
        raw, self._raw = self._raw, None
        if raw is not None:
            raw.close()


class _GroupCommit(WriteGroups):
    """Commits the writes that several tasks make at once in one transaction (``_groups``).

    On a WAL database most of an autocommitted insert's cost is its commit: writing the
    changed pages to the WAL, one frame each. Under concurrent load the same pages change in
    every commit, so one transaction for the statements that arrive together writes them
    once. The group runs in one ``BEGIN IMMEDIATE`` ... ``COMMIT`` on one pooled connection,
    under the writer lock. If any statement fails (or the group runs over the loop's budget)
    the whole group is rolled back and every statement runs again on its own, so each caller
    sees what it would have seen alone, its own error included.
    """

    def __init__(self, backend: SQLiteBackend) -> None:
        super().__init__()
        self._backend = backend

    async def run_members(self, members: list[Member]) -> None:
        backend = self._backend
        connection = backend.acquire_nowait() or await backend.acquire()
        try:
            await connection.wait_idle()
            await backend.lock_writes()
            try:
                # No await from here to the end of the group: a caller cancelled until now
                # is left out, and none can be cancelled while it runs.
                live = [m for m in members if not m.future.done()]
                outcomes = connection.run_group(live) if len(live) > 1 else None
                if outcomes is not None:
                    # Committed: from here on no member may run again.
                    for member, outcome in zip(live, outcomes, strict=True):
                        if not member.future.done():
                            member.future.set_result(outcome)
            finally:
                backend.unlock_writes()
        finally:
            backend.release(connection)


class SQLiteBackend(Backend):
    """SQLite through the stdlib driver; one per ``Database``.

    Options (URL query or keyword; keywords win): ``min_size``, ``max_size`` (file databases
    only; memory databases use one connection), ``pool_timeout`` (seconds, default 30),
    ``command_timeout`` (seconds, default none), ``timeout`` (seconds to wait for another
    process's lock, default 5), ``synchronous`` (``normal`` by default with WAL), ``journal_mode``
    (``wal`` by default for files), ``wal_autocheckpoint`` (pages, default 1000; WAL checkpoints
    run on a worker thread, 0 turns them off), ``cache_size`` (each connection's page cache,
    as ``PRAGMA cache_size``: pages, or KiB when negative; SQLite's default is 2 MiB per
    connection), ``foreign_keys``, ``uri``, ``cached_statements``,
    ``detect_types``, ``check_same_thread`` (accepted; connections are always usable from the
    worker threads), ``group_commit`` (default on for WAL files: concurrent writes made with no
    connection held commit together, see ``_GroupCommit``).
    """

    def __init__(self, url: DatabaseURL, options: dict[str, Any]) -> None:
        self.url = url
        self.compiler = Compiler(SQLiteDialect(paramstyle="qmark"))
        url_options = url.options
        reader = OptionReader(url.scheme, url_options, options)
        self._uri = reader.bool("uri", False)
        self.busy_timeout = reader.float("timeout", 5.0) or 0.0
        self.pool_timeout = reader.float("pool_timeout", 30.0)
        self.command_timeout = reader.float("command_timeout", None)
        self._synchronous = reader.choice(
            "synchronous", "normal", {"off", "normal", "full", "extra"}
        )
        self._foreign_keys = reader.bool("foreign_keys", False)
        self._cached_statements = reader.int("cached_statements", 256)
        self._detect_types = reader.int("detect_types", 0)
        reader.bool("check_same_thread", False)
        if reader.has("isolation_level"):
            raise exceptions.ConfigurationError(
                "option isolation_level is not supported: aiodatabases manages SQLite "
                "transactions itself; use database.transaction() instead"
            )
        database = url.database
        if self._uri:
            # Query options nobody else takes belong to the SQLite URI (cache=shared, mode=...).
            uri_params = {
                k: v
                for k, v in url_options.items()
                if k not in _LIBRARY_OPTIONS and k not in options
            }
            for key in uri_params:
                reader.raw(key)
            query = "&".join(f"{k}={v}" for k, v in uri_params.items())
            self._target = f"{database}?{query}" if query else database
            self.memory = ":memory:" in database or uri_params.get("mode") == "memory"
            if not database.startswith("file:"):
                self._target = f"file:{self._target}"
        else:
            self._target = database or ":memory:"
            self.memory = self._target == ":memory:"
        journal_default = "memory" if self.memory else "wal"
        self._journal_mode = reader.choice(
            "journal_mode", journal_default, {"wal", "delete", "truncate", "persist", "memory"}
        )
        if self.memory:
            # Every connection to a plain memory database is a separate database; one
            # connection, kept open from connect() to disconnect(), is the database.
            reader.int("min_size", 1)
            reader.int("max_size", 1)
            min_size = max_size = 1
        else:
            min_size = reader.int("min_size", 1)
            max_size = reader.int("max_size", 8, minimum=1)
            if min_size > max_size:
                raise exceptions.ConfigurationError(
                    f"min_size={min_size} is larger than max_size={max_size}"
                )
        self._checkpoint_pages = reader.int("wal_autocheckpoint", 1000, minimum=0)
        group_commit = reader.bool("group_commit", True)
        # PRAGMA cache_size of every connection: pages, or KiB when negative; None: SQLite's.
        self._cache_size: int | None = None
        if reader.has("cache_size"):
            self._cache_size = reader.int("cache_size", 0, minimum=-(2**31))
        reader.reject_unknown()
        self._checkpointer = (
            _Checkpointer(self, self._checkpoint_pages)
            if self._journal_mode == "wal" and not self.memory and self._checkpoint_pages
            else None
        )
        self.executor = ThreadPoolExecutor(
            max_workers=max_size + 2, thread_name_prefix="aiodatabases-sqlite"
        )
        self._pool: Pool[SQLiteConnection] = Pool(
            self._open,
            self._close,
            min_size=min_size,
            max_size=max_size,
            timeout=self.pool_timeout,
        )
        self._write_lock = _WriterLock()
        self._groups = (
            _GroupCommit(self)
            if group_commit and self._journal_mode == "wal" and not self.memory
            else None
        )
        self._burst_open = False
        self._burst_start = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- connections ----------------------------------------------------------------------------

    def _connect_raw(self) -> sqlite3.Connection:
        return sqlite3.connect(
            self._target,
            timeout=self.busy_timeout,
            isolation_level=None,
            check_same_thread=False,
            uri=self._uri,
            cached_statements=self._cached_statements,
            detect_types=self._detect_types,
        )

    def _connect_sync(self) -> sqlite3.Connection:
        raw = self._connect_raw()
        try:
            if not self.memory:
                raw.execute(f"PRAGMA journal_mode = {self._journal_mode}")
                pages = self._checkpoint_pages
                if self._checkpointer is not None:
                    pages *= _CHECKPOINT_NET
                raw.execute(f"PRAGMA wal_autocheckpoint = {pages}")
            raw.execute(f"PRAGMA synchronous = {self._synchronous}")
            if self._cache_size is not None:
                raw.execute(f"PRAGMA cache_size = {self._cache_size}")
            if self._foreign_keys:
                raw.execute("PRAGMA foreign_keys = ON")
            raw.execute("PRAGMA busy_timeout = 0")
        except BaseException:
            raw.close()
            raise
        return raw

    async def _open(self) -> SQLiteConnection:
        loop = asyncio.get_running_loop()
        try:
            raw = await loop.run_in_executor(self.executor, self._connect_sync)
        except sqlite3.Error as exc:
            raise translate(exc) from None
        return SQLiteConnection(self, raw)

    async def _close(self, conn: SQLiteConnection) -> None:
        await conn.wait_idle()
        conn.close()

    def new_reader(self, raw: sqlite3.Connection) -> Any:
        """A C reader for a connection on the loop's thread, or None (see ``_csqlite.c``)."""
        if _Reader is None or self._detect_types or type(raw) is not sqlite3.Connection:
            return None
        return _Reader(raw)

    async def connect(self) -> None:
        """Open the pool (and the database file)."""
        self._loop = asyncio.get_running_loop()
        await self._pool.open()

    async def disconnect(self) -> None:
        """Close every connection."""
        try:
            await self._pool.close()
        finally:
            if self._checkpointer is not None:
                await self._checkpointer.close()
            self.executor.shutdown(wait=False)

    def acquire_nowait(self) -> SQLiteConnection | None:
        """Return an idle connection, or ``None``."""
        return self._pool.acquire_nowait()

    async def acquire(self) -> SQLiteConnection:
        """Return a connection, waiting up to ``pool_timeout``."""
        return await self._pool.acquire()

    def release(self, connection: BackendConnection) -> None:
        """Give a connection back, cleaning it first; never waits."""
        assert isinstance(connection, SQLiteConnection)
        inflight = connection._inflight
        if inflight is not None and not inflight.done():
            # A cancelled statement is still stopping on its worker thread.
            inflight.add_done_callback(lambda _: self._give_back(connection))
            return
        self._give_back(connection)

    def _give_back(self, connection: SQLiteConnection) -> None:
        connection._inflight = None
        if connection.reset():
            self._pool.release(connection)
        else:
            self._pool.discard(connection)

    async def execute_detached(self, query: Query, values: Mapping[str, Any] | None) -> Any:
        """Run one statement on a pooled connection held only for it; a plain write made while
        other tasks write too joins a group commit (``_GroupCommit``)."""
        entry, sql, args = self.compiler.prepare(query, values)
        groups = self._groups
        if (
            groups is not None
            and entry.kind in GROUPABLE
            and not entry.readonly
            and not entry.slow
            and groups.wanted()
        ):
            outcome = await groups.run(entry, sql, args)
            if outcome is not ALONE:
                return _returned(self.compiler, entry, outcome)
        connection = self._pool.acquire_nowait() or await self._pool.acquire()
        try:
            # What connection.execute does, without preparing again.
            job = connection.execute_job(entry, sql, args)
            try:
                result = await connection._run(job, entry.readonly, entry)
            except sqlite3.Error as exc:
                raise translate(exc) from None
            return _returned(self.compiler, entry, result)
        finally:
            self.release(connection)

    def pool_stats(self) -> PoolStats:
        """Return the pool's counts."""
        pool = self._pool
        return PoolStats(pool.size, pool.idle, pool.in_use, pool.max_size)

    # -- scheduling ---------------------------------------------------------------------------

    async def lock_writes(self) -> None:
        """Take the process-wide writer lock, waiting up to the busy timeout."""
        lock = self._write_lock
        if lock.try_acquire():
            return
        try:
            await lock.acquire(self.busy_timeout or None)
        except TimeoutError:
            raise combined_error(exceptions.OperationalError, sqlite3.OperationalError, "SQLite")(
                f"database is locked: another transaction held the write lock for more than "
                f"{self.busy_timeout} s (option timeout)"
            ) from None

    def unlock_writes(self) -> None:
        """Release the writer lock (a write has ended)."""
        self._write_lock.release()
        if self._checkpointer is not None:
            self._checkpointer.wrote()

    def burst_expired(self) -> bool:
        """Whether this loop has run statements back to back for too long without yielding."""
        now = time.perf_counter()
        if not self._burst_open:
            self._burst_open = True
            self._burst_start = now
            loop = self._loop or asyncio.get_running_loop()
            loop.call_soon(self._close_burst)
            return False
        return now - self._burst_start > _BURST

    def _close_burst(self) -> None:
        self._burst_open = False


_LIBRARY_OPTIONS = {
    "min_size",
    "max_size",
    "pool_timeout",
    "command_timeout",
    "timeout",
    "synchronous",
    "journal_mode",
    "foreign_keys",
    "cached_statements",
    "detect_types",
    "check_same_thread",
    "uri",
    "wal_autocheckpoint",
    "cache_size",
    "group_commit",
}
