"""The MySQL and MariaDB backend, on the asyncmy driver.

Connections run in autocommit mode; ``transaction()`` opens explicit transactions. MySQL's
protocol cannot resynchronise a connection that stopped reading mid-reply, so:

- A statement cancelled mid-flight leaves its connection closed, never reused, and its server
  thread is ended with ``KILL`` from a separate "killer" connection (its locks go at once).
- The command timeout does not cancel the read: it sends ``KILL QUERY`` and reads the answer,
  so the connection stays usable (after a grace period without answer the socket is closed).
- ``iterate()`` streams rows in batches; when another statement needs the connection
  mid-stream, the rest is read into memory first, so a query inside ``async for`` works.
- Idle connections are pinged before reuse and replaced after ``pool_recycle`` seconds, near
  the server's ``wait_timeout``, or when the server closed them.

``execute()`` returns ``lastrowid`` for an insert (``None`` when no row was inserted) and the
rows MySQL reports as affected for an update or delete: rows changed, not rows matched,
unless ``found_rows=true`` (then as on SQLite and PostgreSQL).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from math import inf
from typing import Any, Concatenate, ParamSpec, TypeVar

import asyncmy
from asyncmy import errors as mysql_errors
from asyncmy.constants import SERVER_STATUS
from asyncmy.cursors import Cursor, SSCursor

from .. import exceptions
from .._compiler import CompiledQuery, Compiler, Kind, Query
from .._pool import Pool
from .._records import Record, ResultMeta
from .._url import DatabaseURL
from ._asyncmy_plans import plan
from ._asyncmy_types import (
    AsyncmyCursor,
    AsyncmyDialect,
    Killer,
    begin_statements,
    check_rows,
    connect_args,
    is_disconnect,
    quit_politely,
    render,
    translate,
)
from ._options import OptionReader
from .base import Backend, BackendConnection, PoolStats, TransactionOptions

__all__ = ["AsyncmyBackend", "AsyncmyConnection"]

T = TypeVar("T")
P = ParamSpec("P")
logger = logging.getLogger("aiodatabases.query")
pool_logger = logging.getLogger("aiodatabases.pool")
driver_logger = logging.getLogger("asyncmy")

# Seconds a statement killed by the command timeout may take to stop before its socket closes.
_KILL_GRACE = 5.0
# Idle seconds after which a pooled connection is pinged before reuse.
_PING_AFTER = 60.0

_FINE, _PING, _RECONNECT = 0, 1, 2
_IN_TXN = SERVER_STATUS.SERVER_STATUS_IN_TRANS


def _exclusive(
    method: Callable[Concatenate[AsyncmyConnection, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[AsyncmyConnection, P], Coroutine[Any, Any, T]]:
    """Mark the connection busy for the call, so a release meanwhile waits for its end."""

    @functools.wraps(method)
    async def call(self: AsyncmyConnection, /, *args: P.args, **kwargs: P.kwargs) -> T:
        self.busy += 1
        try:
            return await method(self, *args, **kwargs)
        finally:
            self.leave()

    return call


class AsyncmyConnection(BackendConnection):
    """One asyncmy connection; used by one task at a time (``Connection`` ensures it)."""

    def __init__(self, backend: AsyncmyBackend, raw: Any) -> None:
        self._backend = backend
        self._compiler = backend.compiler
        self._loop = backend.loop
        self._raw = raw
        self._thread_id: int = raw.thread_id()
        now = time.monotonic()
        self.opened = now
        self.last_used = now
        self.check = _FINE
        self._broken = False
        self._txn = False
        self._stream: AsyncmyCursor | None = None
        self._expired = False
        self._kill: asyncio.Task[bool] | None = None
        self._abort: asyncio.TimerHandle | None = None
        self._deadline: float | None = None  # when the running statement times out
        self._watch: asyncio.TimerHandle | None = None  # a timer at or before _deadline
        self.busy = 0
        self.parked = False

    @property
    def raw_connection(self) -> asyncmy.Connection:
        """The ``asyncmy.Connection``."""
        raw: asyncmy.Connection = self._raw
        return raw

    @property
    def in_transaction(self) -> bool:
        """Whether a transaction is open (ours, or one a raw ``BEGIN`` opened)."""
        return self._txn or (not self.broken and bool(self._raw.get_transaction_status()))

    @property
    def broken(self) -> bool:
        """Whether the connection is closed or its protocol state is unknown."""
        raw = self._raw
        return self._broken or not raw.connected or bool(getattr(raw, "_stream_broken", False))

    def forget_transaction(self) -> None:
        """Drop the transaction of a lost connection: the server rolled it back."""
        self._txn = False

    def leave(self) -> None:
        """End a call; a release that came in meanwhile happens now."""
        self.busy -= 1
        if not self.busy and self.parked:
            self.parked = False
            self._backend.release(self)

    # -- running statements -----------------------------------------------------------------

    def _lose(self) -> None:
        """Close the connection now, its state being unknown, and end its server thread.

        The server goes on running a statement whose client went away, holding its locks, so
        the thread is killed, unless the server hung up itself (after a restart the same
        thread id may name someone else's connection).
        """
        if not self._broken:
            self._broken = True
            proto = getattr(self._raw, "_proto", None)
            hung_up = getattr(proto, "eof", False) or getattr(proto, "exc", None) is not None
            if not hung_up:
                self._backend.spawn(self._backend.killer.kill(self._thread_id))
        self._raw.close()
        self._stream = None
        if self._abort is not None:
            self._abort.cancel()
        self._expired, self._kill, self._abort = False, None, None

    def _on_timeout(self) -> None:
        self._expired = True
        raw = self._raw
        kill = self._backend.spawn(self._backend.killer.kill(self._thread_id, True))

        def unanswered(task: asyncio.Task[bool]) -> None:
            # The server did not take the KILL QUERY (hung, unreachable): stop waiting for
            # the statement's answer now rather than after the grace period.
            if not task.cancelled() and task.exception() is None and not task.result():
                raw.close()

        kill.add_done_callback(unanswered)
        self._kill = kill
        self._abort = self._backend.loop.call_later(_KILL_GRACE, raw.close)

    def _on_watch(self) -> None:
        """The timeout timer fired: time out the running statement, or wait for its deadline.

        One timer serves many statements: each sets its deadline, and the timer, armed at an
        earlier deadline, moves on to the current one (or stops while none runs). That saves
        creating and cancelling a timer per statement, a tenth of a short query's cost.
        """
        self._watch = None
        deadline = self._deadline
        if deadline is None:
            return
        loop = self._backend.loop
        if loop.time() < deadline:
            self._watch = loop.call_at(deadline, self._on_watch)
        else:
            self._deadline = None
            self._on_timeout()

    def _arm(self) -> None:
        """Start the command timeout of the statement about to run."""
        timeout = self._backend.command_timeout
        if timeout is not None:
            loop = self._loop
            self._deadline = deadline = loop.time() + timeout
            if self._watch is None:
                self._watch = loop.call_at(deadline, self._on_watch)

    async def _failed(self, exc: Exception) -> None:
        """Raise the error of a driver operation that failed (a timeout takes precedence)."""
        if self._expired:
            await self._expire(exc)
        if not isinstance(exc, mysql_errors.MySQLError) or is_disconnect(exc):
            self._lose()
        raise translate(exc) from None

    async def _guard(self, operation: Awaitable[T]) -> T:
        """Await a driver operation under the command timeout, translating its errors."""
        self._arm()
        try:
            result = await operation
        except asyncio.CancelledError:
            self._deadline = None
            self._lose()
            raise
        except Exception as exc:
            self._deadline = None
            await self._failed(exc)
            raise  # not reached: _failed() raises
        self._deadline = None
        if self._expired:
            await self._expire(None)
        return result

    async def _query(self, sql: str, args: Sequence[Any]) -> Any:
        """Run a statement, its rows read in full, under the command timeout.

        Returns the driver's result (``rows``, ``description``, ``affected_rows``,
        ``insert_id``). The driver's connection is called directly rather than through a
        cursor: a cursor adds an object and four coroutine frames per statement and only
        copies these four fields.
        """
        raw = self._raw
        if (
            self._stream is not None
            or self.check
            or self._broken
            or raw._stream_broken
            or not raw._connected
        ):
            await self._ready()
            raw = self._raw
        query = render(raw, sql, args)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s", sql)
        timeout = self._backend.command_timeout
        if timeout is not None:  # as _arm() does, inline: this runs for every statement
            self._deadline = deadline = self._loop.time() + timeout
            if self._watch is None:
                self._watch = self._loop.call_at(deadline, self._on_watch)
        try:
            await raw.query(query)
        except asyncio.CancelledError:
            self._deadline = None
            self._lose()
            raise
        except Exception as exc:
            self._deadline = None
            await self._failed(exc)
            raise  # not reached: _failed() raises
        self._deadline = None
        if self._expired:
            await self._expire(None)
        result = raw._result
        if result.warning_count and not result.has_next:
            await self._log_warnings(raw)
        return result

    async def _log_warnings(self, raw: Any) -> None:
        """Log the server's warnings about the last statement, as the driver's cursor does."""
        warnings = await self._guard(raw.show_warnings())
        for warning in warnings or ():
            driver_logger.warning(warning[-1])

    async def _expire(self, error: BaseException | None) -> None:
        """The command timeout fired: let the KILL QUERY land, then raise the timeout."""
        kill, self._kill = self._kill, None
        abort, self._abort = self._abort, None
        self._expired = False
        stopped = False
        try:
            if kill is not None:
                stopped = await asyncio.shield(kill)
        except asyncio.CancelledError:
            self._lose()
            raise
        finally:
            if abort is not None:
                abort.cancel()
        if error is not None and (not isinstance(error, mysql_errors.MySQLError) or self.broken):
            self._lose()
        outcome = (
            "was stopped on the server"
            if stopped
            else "could not be stopped with KILL QUERY (is the server answering?); "
            "its connection was closed"
        )
        if not stopped:
            self._lose()
        raise exceptions.QueryTimeoutError(
            f"the statement ran longer than command_timeout={self._backend.command_timeout} s "
            f"and {outcome}"
        ) from error

    async def _ready(self) -> None:
        """Make the connection ready for a statement: free it from a stream, revive it."""
        if self._stream is not None:
            await self._stream.detach()
        if self.check or self.broken:
            await self._revive()

    async def _revive(self) -> None:
        """Ping a long-idle connection; replace a dead, old or failing one."""
        if self.broken and self._txn:
            raise exceptions.OperationalError(
                "the connection to the server was lost inside a transaction, which the server "
                "rolled back; roll the transaction back and run it again"
            )
        check, self.check = self.check, _FINE
        if check == _PING and not self.broken:
            try:
                async with asyncio.timeout(self._backend.connect_timeout):
                    await self._raw.ping(False)
                return
            except asyncio.CancelledError:
                self._lose()
                raise
            except Exception:
                pool_logger.debug("ping failed; reconnecting", exc_info=True)
        if self.broken:
            self._raw.close()  # a statement cut short was killed by _lose() already
        else:
            self._backend.spawn(quit_politely(self._raw, self._backend.connect_timeout))
        self._broken = True
        self._raw = await self._backend.open_raw()
        self._thread_id = self._raw.thread_id()
        self.opened = time.monotonic()
        self._broken = False

    async def _unbuffered(self, sql: str, args: Sequence[Any]) -> Cursor:
        """Start a statement whose rows are read as they are fetched (``iterate()``)."""
        await self._ready()
        raw = self._raw
        query = render(raw, sql, args)
        cursor: Cursor = raw.cursor(SSCursor)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s", sql)
        await self._guard(cursor.execute(query))
        return cursor

    def _meta(self, entry: CompiledQuery, description: Sequence[Any]) -> ResultMeta:
        """Return the result plan of a statement's rows."""
        return plan(self._compiler, entry, description)

    # -- the query API ----------------------------------------------------------------------

    async def fetch_all(self, query: Query, values: Mapping[str, Any] | None) -> list[Record]:
        """Run a query and return all its rows."""
        self.busy += 1
        try:
            entry, sql, args = self._compiler.prepare(query, values)
            result = await self._query(sql, args)
            description = result.description
            if not description:
                return []
            return self._meta(entry, description).records(result.rows, take=True)
        finally:
            self.leave()

    async def fetch_one(self, query: Query, values: Mapping[str, Any] | None) -> Record | None:
        """Run a query and return its first row, or ``None``."""
        self.busy += 1
        try:
            entry, sql, args = self._compiler.prepare(query, values)
            result = await self._query(sql, args)
            rows = result.rows
            if not rows or not result.description:
                return None
            return self._meta(entry, result.description).record(rows[0])
        finally:
            self.leave()

    async def fetch_val(
        self, query: Query, values: Mapping[str, Any] | None, column: Any = 0
    ) -> Any:
        """Run a query and return one value of its first row, or ``None``."""
        record = await self.fetch_one(query, values)
        return None if record is None else record[column]

    async def execute(self, query: Query, values: Mapping[str, Any] | None) -> Any:
        """Run a statement; return the new row id, the changed-row count or a RETURNING value."""
        self.busy += 1
        try:
            entry, sql, args = self._compiler.prepare(query, values)
            result = await self._query(sql, args)
            description = result.description
            if description:
                rows = result.rows
                return self._meta(entry, description).record(rows[0])[0] if rows else None
            count = int(result.affected_rows)
            if entry.kind == Kind.INSERT:
                return result.insert_id if count > 0 else None
            return count
        finally:
            self.leave()

    @_exclusive
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
        rows = check_rows(rows)
        await self._ready()
        nested = self.in_transaction
        # Atomic: all rows or none, inside the caller's transaction or in our own.
        await self._query("SAVEPOINT aiodatabases_many" if nested else "START TRANSACTION", ())
        try:
            await self._guard(self._raw.cursor().executemany(sql, rows))
        except BaseException:
            if not self.broken:
                undo = "ROLLBACK TO SAVEPOINT aiodatabases_many" if nested else "ROLLBACK"
                try:
                    await self._query(undo, ())
                except BaseException:
                    self._lose()  # partial rows must never be kept: let the server drop them
                    raise
            raise
        await self._query("RELEASE SAVEPOINT aiodatabases_many" if nested else "COMMIT", ())

    async def cursor(self, query: Query, values: Mapping[str, Any] | None) -> AsyncmyCursor:
        """Open a cursor whose rows are streamed in batches."""
        entry, sql, args = self._compiler.prepare(query, values)
        return AsyncmyCursor(self, entry, sql, args)

    # -- transactions -----------------------------------------------------------------------

    @_exclusive
    async def begin(self, options: TransactionOptions) -> None:
        """Open a transaction, with the isolation level and access mode asked for."""
        statements = begin_statements(options)
        if self.in_transaction:
            raise exceptions.TransactionStateError(
                "cannot begin(): a transaction is already open on this connection "
                "(opened with a raw BEGIN?); commit or roll it back first"
            )
        for sql in statements:
            await self._query(sql, ())
        self._txn = True

    @_exclusive
    async def commit(self) -> None:
        """Commit the transaction."""
        await self._query("COMMIT", ())
        self._txn = False

    @_exclusive
    async def rollback(self) -> None:
        """Roll back the transaction; a lost connection's transaction is already gone."""
        try:
            if not self.broken:
                await self._query("ROLLBACK", ())
        except exceptions.OperationalError:
            if not self.broken:
                raise
        finally:
            self._txn = False

    @_exclusive
    async def savepoint(self, name: str) -> None:
        """Open a savepoint."""
        await self._query(f"SAVEPOINT {name}", ())

    @_exclusive
    async def release_savepoint(self, name: str) -> None:
        """Release a savepoint, keeping its work."""
        await self._query(f"RELEASE SAVEPOINT {name}", ())

    @_exclusive
    async def rollback_to_savepoint(self, name: str) -> None:
        """Undo a savepoint's work. MySQL keeps the savepoint itself until the transaction
        ends; names are never reused, so it is not released (one round trip less).

        On a lost connection there is nothing to undo (the server rolled the whole
        transaction back), and raising here would hide the error or cancellation that ended
        the savepoint; the outer transaction's next statement or commit reports the loss.
        """
        if self.broken and self._txn:
            return
        await self._query(f"ROLLBACK TO SAVEPOINT {name}", ())

    # -- pool hooks ---------------------------------------------------------------------------

    async def reset(self) -> None:
        """Make the connection clean for its next user: drain rows, roll back."""
        if self._stream is not None:
            self._stream.closed = True
            await self._stream.detach()
        if self.in_transaction and not self.broken:
            await self._query("ROLLBACK", ())
            self._txn = False

    async def close(self) -> None:
        """Close the connection, politely when its state is known."""
        if self.broken:
            self._raw.close()
        else:
            await quit_politely(self._raw, self._backend.connect_timeout)


class AsyncmyBackend(Backend):
    """MySQL and MariaDB through asyncmy; one per ``Database``.

    Options (URL query or keyword; keywords win): ``min_size`` (default 1), ``max_size``
    (default 10), ``pool_timeout`` (seconds to wait for a connection, default 30),
    ``command_timeout`` (seconds a statement may run, default 60), ``connect_timeout``
    (default 10), ``pool_recycle`` (seconds before a connection is replaced, default 3600;
    idle connections are also replaced before the server's ``wait_timeout``), ``ssl``
    (``true``/``verify-full``, ``verify-ca``, ``require``, ``false``, or an
    ``ssl.SSLContext``), ``unix_socket`` (or ``unix_sock``), ``host``, ``charset`` (default
    ``utf8mb4``), ``found_rows`` (count matched instead of changed rows), and the driver's
    ``init_command``, ``sql_mode``, ``program_name``, ``local_infile``,
    ``max_allowed_packet``, ``server_public_key``, ``auth_plugin_map``, ``password_creator``.
    """

    def __init__(self, url: DatabaseURL, options: dict[str, Any]) -> None:
        self.url = url
        self._dialect = AsyncmyDialect(paramstyle="format")
        self.compiler = Compiler(self._dialect)
        reader = OptionReader(url.scheme, url.options, options)
        min_size = reader.int("min_size", 1)
        max_size = reader.int("max_size", 10, minimum=1)
        if min_size > max_size:
            raise exceptions.ConfigurationError(
                f"min_size={min_size} is larger than max_size={max_size}"
            )
        self.pool_timeout = reader.float("pool_timeout", 30.0)
        self.command_timeout = reader.float("command_timeout", 60.0)
        self.connect_timeout = reader.float("connect_timeout", 10.0)
        self.pool_recycle = reader.float("pool_recycle", 3600.0) or inf
        self.idle_limit = inf
        self._connect_args = connect_args(url, reader, self.connect_timeout)
        reader.reject_unknown()
        self._configured = False
        self._pool: Pool[AsyncmyConnection] = Pool(
            self._open, self._close, min_size=min_size, max_size=max_size, timeout=self.pool_timeout
        )
        self._tasks: set[asyncio.Task[Any]] = set()
        self.killer = Killer(self._connect_args, self.connect_timeout)
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the backend was connected on."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    # -- connections ----------------------------------------------------------------------------

    async def open_raw(self) -> Any:
        """Open a driver connection (and set the dialect up from the first one).

        Raises:
            OperationalError: The server cannot be reached or refused the login.
        """
        raw: Any = None
        try:
            async with asyncio.timeout(self.connect_timeout):
                raw = await asyncmy.connect(**self._connect_args)
                if not self._configured:
                    await self._configure(raw)
        except TimeoutError:
            if raw is not None:
                raw.close()
            raise exceptions.OperationalError(
                f"could not connect to {self.url.obscure_password} within "
                f"connect_timeout={self.connect_timeout} s"
            ) from None
        except (mysql_errors.MySQLError, OSError) as exc:
            if raw is not None:
                raw.close()
            raise translate(exc) from None
        except ValueError as exc:
            raise exceptions.ConfigurationError(f"cannot connect: {exc}") from None
        return raw

    async def _configure(self, raw: Any) -> None:
        cursor = raw.cursor()
        await cursor.execute(
            "SELECT VERSION(), @@session.sql_mode, @@session.wait_timeout, @@lower_case_table_names"
        )
        version, sql_mode, wait_timeout, casing = (await cursor.fetchall())[0]
        self._dialect.configure(str(version), str(sql_mode or ""), int(casing or 0))
        # Replace idle connections well before the server drops them.
        wait = float(wait_timeout or 28_800)
        self.idle_limit = max(wait - max(1.0, wait * 0.1), wait * 0.5)
        self._configured = True

    async def _open(self) -> AsyncmyConnection:
        return AsyncmyConnection(self, await self.open_raw())

    async def _close(self, conn: AsyncmyConnection) -> None:
        await conn.close()

    async def connect(self) -> None:
        """Open the pool."""
        self._loop = asyncio.get_running_loop()
        await self._pool.open()

    async def disconnect(self) -> None:
        """Close every connection."""
        await self._pool.close()
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=self.connect_timeout)
            for task in pending:
                task.cancel()
        await self.killer.close()

    def _checkout(self, conn: AsyncmyConnection) -> AsyncmyConnection:
        # A closed connection is replaced before its next statement (see _query), so only its
        # age and idle time are checked here.
        now = time.monotonic()
        idle = now - conn.last_used
        if now - conn.opened > self.pool_recycle or idle > self.idle_limit:
            conn.check = _RECONNECT
        elif idle > _PING_AFTER:
            conn.check = _PING
        return conn

    def acquire_nowait(self) -> AsyncmyConnection | None:
        """Return an idle connection, or ``None``."""
        conn = self._pool.acquire_nowait()
        return None if conn is None else self._checkout(conn)

    async def acquire(self) -> AsyncmyConnection:
        """Return a connection, waiting up to ``pool_timeout``."""
        return self._checkout(await self._pool.acquire())

    def release(self, connection: BackendConnection) -> None:
        """Give a connection back; cleanup that needs the server runs in the background."""
        if not isinstance(connection, AsyncmyConnection):
            raise exceptions.InterfaceError(
                f"cannot release(): {connection!r} does not belong to this backend"
            )
        if connection.busy:
            # Released by another task while a call still runs on it: give it back after.
            connection.parked = True
            return
        connection.last_used = time.monotonic()
        raw = connection._raw
        if connection._stream is None and not connection._txn and not raw.server_status & _IN_TXN:
            # Clean, or closed with nothing to forget: a closed one is replaced before its
            # next statement (see _query).
            self._pool.release(connection)
        elif connection._broken or raw._stream_broken or not raw._connected:
            # Kept in its pool slot and reconnected at its next checkout: discarding it and
            # opening another would cost the same, and a slot handed on can be taken twice.
            connection.forget_transaction()
            self._pool.release(connection)
        else:
            self.spawn(self._reset_and_release(connection))

    async def _reset_and_release(self, conn: AsyncmyConnection) -> None:
        try:
            async with asyncio.timeout(self.connect_timeout):
                await conn.reset()
        except (Exception, asyncio.CancelledError):
            pool_logger.warning("resetting a released connection failed", exc_info=True)
            conn._lose()
            conn.forget_transaction()
        self._pool.release(conn)

    def pool_stats(self) -> PoolStats:
        """Return the pool's counts."""
        pool = self._pool
        return PoolStats(pool.size, pool.idle, pool.in_use, pool.max_size)

    # -- background work ------------------------------------------------------------------------

    def spawn(self, coroutine: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run cleanup in the background; ``disconnect()`` waits for it."""
        task = self.loop.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task
