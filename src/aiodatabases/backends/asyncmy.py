"""The MySQL and MariaDB backend, on the asyncmy driver.

Connections run in autocommit mode; ``transaction()`` opens explicit transactions. A few
rules keep a connection's protocol state always known, because MySQL's protocol has no way
to resynchronise a connection that stopped reading in the middle of a reply:

- A statement cancelled mid-flight (task cancellation) leaves the connection closed, never
  reused, and its server thread is ended with ``KILL`` from a separate "killer" connection,
  so its locks and any open transaction go at once.
- The command timeout does not cancel the read: it sends ``KILL QUERY`` for the statement and
  keeps reading until the server answers, so the connection stays usable. If the server does
  not answer within a grace period the socket is closed instead.
- ``iterate()`` streams rows (unbuffered) in batches. MySQL cannot run another statement
  while rows are pending, so when another statement needs the connection mid-stream, the
  rest of the stream is first read into memory; a query inside ``async for`` just works.
- Idle connections are pinged before reuse, replaced after ``pool_recycle`` seconds or when
  they have been idle for nearly the server's ``wait_timeout``, and replaced when the server
  closed them: an idle connection never fails a request.

``execute()`` returns ``lastrowid`` for an insert (``None`` when no row was inserted) and,
for an update or delete, the rows MySQL reports as affected: by default rows actually
changed, not rows matched (option ``found_rows=true`` counts matched rows, as SQLite and
PostgreSQL do).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Coroutine, Mapping, Sequence
from math import inf
from typing import Any, TypeVar

import asyncmy
from asyncmy import errors as mysql_errors
from asyncmy.constants import CLIENT
from asyncmy.cursors import Cursor, SSCursor

from .. import exceptions
from .._compiler import CompiledQuery, Compiler, Kind, Query
from .._pool import Pool
from .._records import Record, ResultMeta
from .._url import DatabaseURL
from ._asyncmy_types import (
    AsyncmyDialect,
    check_rows,
    errno_of,
    is_disconnect,
    render,
    ssl_option,
    translate,
)
from ._options import OptionReader
from .base import Backend, BackendConnection, PoolStats, TransactionOptions

__all__ = ["AsyncmyBackend", "AsyncmyConnection"]

T = TypeVar("T")
logger = logging.getLogger("aiodatabases.query")
pool_logger = logging.getLogger("aiodatabases.pool")

_ITERATE_BATCH = 500
# Batches a closed-but-unfinished stream is drained for before the connection is replaced.
_DRAIN_BATCHES = 16
# Seconds a statement killed by the command timeout may take to stop before its socket closes.
_KILL_GRACE = 5.0
# Idle seconds after which a pooled connection is pinged before reuse.
_PING_AFTER = 60.0
_ER_NO_SUCH_THREAD = 1094

_FINE, _PING, _RECONNECT = 0, 1, 2

_ISOLATION = {
    "serializable": "SERIALIZABLE",
    "repeatable_read": "REPEATABLE READ",
    "read_committed": "READ COMMITTED",
    "read_uncommitted": "READ UNCOMMITTED",
}


class AsyncmyConnection(BackendConnection):
    """One asyncmy connection; used by one task at a time (``Connection`` ensures it)."""

    def __init__(self, backend: AsyncmyBackend, raw: Any) -> None:
        self._backend = backend
        self._compiler = backend.compiler
        self._raw = raw
        self._thread_id: int = raw.thread_id()
        now = time.monotonic()
        self.opened = now
        self.last_used = now
        self.check = _FINE
        self._broken = False
        self._txn = False
        self._stream: _AsyncmyCursor | None = None
        self._expired = False
        self._kill: asyncio.Task[None] | None = None
        self._abort: asyncio.TimerHandle | None = None

    @property
    def raw_connection(self) -> asyncmy.Connection:
        """The ``asyncmy.Connection``."""
        raw: asyncmy.Connection = self._raw
        return raw

    @property
    def in_transaction(self) -> bool:
        """Whether a transaction is open (ours, or one a raw ``BEGIN`` opened)."""
        return self._txn or bool(self._raw.get_transaction_status())

    @property
    def broken(self) -> bool:
        """Whether the connection is closed or its protocol state is unknown."""
        raw = self._raw
        return self._broken or not raw.connected or bool(getattr(raw, "_stream_broken", False))

    @property
    def needs_reset(self) -> bool:
        """Whether rows are pending or a transaction is open: not ready for the next user."""
        return self._stream is not None or self.in_transaction

    # -- running statements -----------------------------------------------------------------

    def _lose(self) -> None:
        """Close the connection now and end its server thread: its state is unknown."""
        if not self._broken:
            self._broken = True
            self._backend.spawn(self._backend.kill(self._thread_id))
        self._raw.close()
        self._stream = None

    def _on_timeout(self) -> None:
        self._expired = True
        self._kill = self._backend.spawn(self._backend.kill(self._thread_id, query_only=True))
        self._abort = self._backend.loop.call_later(_KILL_GRACE, self._raw.close)

    async def _guard(self, operation: Awaitable[T]) -> T:
        """Await a driver operation under the command timeout, translating its errors."""
        timeout = self._backend.command_timeout
        handle = None
        if timeout is not None:
            handle = self._backend.loop.call_later(timeout, self._on_timeout)
        try:
            result = await operation
        except asyncio.CancelledError:
            if handle is not None:
                handle.cancel()
            self._lose()
            raise
        except Exception as exc:
            if handle is not None:
                handle.cancel()
            if self._expired:
                await self._expire(exc)
            if not isinstance(exc, mysql_errors.MySQLError) or is_disconnect(exc):
                self._lose()
            raise translate(exc) from None
        if handle is not None:
            handle.cancel()
        if self._expired:
            await self._expire(None)
        return result

    async def _expire(self, error: BaseException | None) -> None:
        """The command timeout fired: let the KILL QUERY land, then raise the timeout."""
        kill, self._kill = self._kill, None
        abort, self._abort = self._abort, None
        self._expired = False
        try:
            if kill is not None:
                await asyncio.shield(kill)
        except asyncio.CancelledError:
            self._lose()
            raise
        finally:
            if abort is not None:
                abort.cancel()
        if error is not None and (not isinstance(error, mysql_errors.MySQLError) or self.broken):
            self._lose()
        raise exceptions.QueryTimeoutError(
            f"the statement ran longer than command_timeout={self._backend.command_timeout} s "
            "and was stopped on the server"
        ) from error

    async def _ready(self) -> None:
        """Make the connection ready for a statement: free it from a stream, revive it."""
        if self._stream is not None:
            stream, self._stream = self._stream, None
            self._stream = stream
            await stream.detach()
        if self.check or self.broken:
            await self._revive()

    async def _revive(self) -> None:
        if self.broken and self.in_transaction:
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
        old = self._raw
        if self.broken:
            self._lose()
        else:
            self._backend.spawn(_quit(old, self._backend.connect_timeout))
        self._broken = True
        raw = await self._backend.open_raw()
        self._raw = raw
        self._thread_id = raw.thread_id()
        self.opened = time.monotonic()
        self._broken = False
        self._txn = False

    async def _statement(self, sql: str, args: Sequence[Any], unbuffered: bool = False) -> Cursor:
        await self._ready()
        raw = self._raw
        query = render(raw, sql, args)
        cursor: Cursor = raw.cursor(SSCursor) if unbuffered else raw.cursor()
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s", sql)
        await self._guard(cursor.execute(query))
        return cursor

    def _prepare(
        self, query: Query, values: Mapping[str, Any] | None
    ) -> tuple[CompiledQuery | None, str, Sequence[Any]]:
        if isinstance(query, str):
            entry = self._compiler.text(query)
            return entry, entry.sql, entry.args_for_text(values)
        entry, compiled, extracted, values = self._compiler.core(query, values)
        if entry.compiled is None:
            return entry, entry.sql, ()
        sql, args = self._compiler.core_args(entry, compiled, extracted, values)
        return entry, sql, args

    def _records(self, entry: CompiledQuery | None, cursor: Cursor, rows: Any) -> list[Record]:
        names = [d[0] for d in cursor.description]
        return self._compiler.meta_for(entry, names).records(rows)

    # -- the query API ----------------------------------------------------------------------

    async def fetch_all(self, query: Query, values: Mapping[str, Any] | None) -> list[Record]:
        """Run a query and return all its rows."""
        entry, sql, args = self._prepare(query, values)
        cursor = await self._statement(sql, args)
        if not cursor.description:
            return []
        return self._records(entry, cursor, await cursor.fetchall())

    async def fetch_one(self, query: Query, values: Mapping[str, Any] | None) -> Record | None:
        """Run a query and return its first row, or ``None``."""
        entry, sql, args = self._prepare(query, values)
        cursor = await self._statement(sql, args)
        if not cursor.description:
            return None
        rows = await cursor.fetchall()
        if not rows:
            return None
        names = [d[0] for d in cursor.description]
        return self._compiler.meta_for(entry, names).record(rows[0])

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
        entry, sql, args = self._prepare(query, values)
        cursor = await self._statement(sql, args)
        if cursor.description:
            rows = await cursor.fetchall()
            if not rows:
                return None
            names = [d[0] for d in cursor.description]
            return self._compiler.meta_for(entry, names).record(rows[0])[0]
        count = int(cursor.rowcount)  # type: ignore[call-overload]  # the stubs say object
        if entry is not None and entry.kind == Kind.INSERT:
            return cursor.lastrowid if count > 0 else None
        return count

    async def execute_many(self, query: Query, values: Sequence[Mapping[str, Any]]) -> None:
        """Run a statement for every set of values in one ``executemany``, atomically."""
        if not values:
            return
        if isinstance(query, str):
            entry = self._compiler.text(query)
            sql = entry.sql
            rows: Sequence[Any] = [entry.args_for_text(v) for v in values]
        else:
            entry, compiled, extracted, _ = self._compiler.core(query, values[0], many=True)
            sql = entry.sql
            rows = self._compiler.core_many(entry, compiled, extracted, values)
        rows = check_rows(rows)
        await self._ready()
        nested = self.in_transaction
        # Atomic: all rows or none, inside the caller's transaction or in our own.
        await self._statement("SAVEPOINT aiodatabases_many" if nested else "START TRANSACTION", ())
        try:
            await self._guard(self._raw.cursor().executemany(sql, rows))
        except BaseException:
            if not self.broken:
                undo = "ROLLBACK TO SAVEPOINT aiodatabases_many" if nested else "ROLLBACK"
                try:
                    await self._statement(undo, ())
                except BaseException:
                    self._lose()  # partial rows must never be kept: let the server drop them
                    raise
            raise
        await self._statement("RELEASE SAVEPOINT aiodatabases_many" if nested else "COMMIT", ())

    async def cursor(self, query: Query, values: Mapping[str, Any] | None) -> _AsyncmyCursor:
        """Open a cursor whose rows are streamed in batches."""
        entry, sql, args = self._prepare(query, values)
        return _AsyncmyCursor(self, entry, sql, args)

    # -- transactions -----------------------------------------------------------------------

    async def begin(self, options: TransactionOptions) -> None:
        """Open a transaction, with the isolation level and access mode asked for."""
        level = None
        if options.isolation is not None:
            level = _ISOLATION.get(options.isolation)
            if level is None:
                raise exceptions.ConfigurationError(
                    f"unknown isolation level {options.isolation!r}; use one of "
                    f"{', '.join(sorted(_ISOLATION))}"
                )
        if options.deferrable:
            raise exceptions.ConfigurationError(
                "deferrable transactions exist only on PostgreSQL; drop deferrable=True"
            )
        start = "START TRANSACTION"
        characteristics = []
        if options.mode is not None:
            if options.mode.lower() != "consistent_snapshot":
                raise exceptions.ConfigurationError(
                    f"unknown MySQL transaction mode {options.mode!r}; use consistent_snapshot"
                )
            characteristics.append("WITH CONSISTENT SNAPSHOT")
        if options.readonly:
            characteristics.append("READ ONLY")
        if characteristics:
            start += " " + ", ".join(characteristics)
        if self.in_transaction and not self.broken:
            raise exceptions.TransactionStateError(
                "cannot begin(): a transaction is already open on this connection "
                "(opened with a raw BEGIN?); commit or roll it back first"
            )
        if level is not None:
            # Applies to the next transaction only.
            await self._statement(f"SET TRANSACTION ISOLATION LEVEL {level}", ())
        await self._statement(start, ())
        self._txn = True

    async def commit(self) -> None:
        """Commit the transaction."""
        await self._statement("COMMIT", ())
        self._txn = False

    async def rollback(self) -> None:
        """Roll back the transaction; a lost connection's transaction is already gone."""
        try:
            if not self.broken:
                await self._statement("ROLLBACK", ())
        except exceptions.OperationalError:
            if not self.broken:
                raise
        finally:
            self._txn = False

    async def savepoint(self, name: str) -> None:
        """Open a savepoint."""
        await self._statement(f"SAVEPOINT {name}", ())

    async def release_savepoint(self, name: str) -> None:
        """Release a savepoint, keeping its work."""
        await self._statement(f"RELEASE SAVEPOINT {name}", ())

    async def rollback_to_savepoint(self, name: str) -> None:
        """Undo a savepoint's work. MySQL keeps the savepoint itself until the transaction
        ends; names are never reused, so it is not released (one round trip less)."""
        await self._statement(f"ROLLBACK TO SAVEPOINT {name}", ())

    # -- pool hooks ---------------------------------------------------------------------------

    async def reset(self) -> None:
        """Make the connection clean for its next user: drain rows, roll back."""
        if self._stream is not None:
            self._stream.closed = True
            await self._ready()
        if self.in_transaction and not self.broken:
            await self._statement("ROLLBACK", ())
            self._txn = False

    async def close(self) -> None:
        """Close the connection, politely when its state is known."""
        if self.broken:
            self._lose()
            return
        await _quit(self._raw, self._backend.connect_timeout)


async def _quit(raw: Any, seconds: float | None) -> None:
    try:
        async with asyncio.timeout(seconds):
            await raw.ensure_closed()
    except (Exception, asyncio.CancelledError):
        raw.close()


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
        if reader.has("autocommit"):
            raise exceptions.ConfigurationError(
                "option autocommit is not supported: aiodatabases runs MySQL in autocommit "
                "mode and opens transactions itself; use database.transaction()"
            )
        client_flag = CLIENT.FOUND_ROWS if reader.bool("found_rows", False) else 0
        args: dict[str, Any] = {
            "host": url.components.hostname or reader.raw("host") or "localhost",
            "port": url.port or 3306,
            "user": url.username,
            "password": url.password or "",
            "database": url.database or None,
            "unix_socket": reader.raw("unix_socket") or reader.raw("unix_sock"),
            "charset": str(reader.raw("charset", "utf8mb4")),
            "ssl": ssl_option(reader.raw("ssl")),
            "autocommit": True,
            "client_flag": client_flag,
            "connect_timeout": self.connect_timeout or 31_536_000,
        }
        for name in ("init_command", "sql_mode", "program_name"):
            if reader.has(name):
                args[name] = str(reader.raw(name))
        if reader.has("local_infile"):
            args["local_infile"] = reader.bool("local_infile", False)
        if reader.has("max_allowed_packet"):
            args["max_allowed_packet"] = reader.int("max_allowed_packet", 0, minimum=1)
        for name in ("server_public_key", "auth_plugin_map", "password_creator"):
            if reader.has(name):
                args[name] = reader.raw(name)
        reader.reject_unknown()
        self._connect_args = args
        self._configured = False
        self._pool: Pool[AsyncmyConnection] = Pool(
            self._open, self._close, min_size=min_size, max_size=max_size, timeout=self.pool_timeout
        )
        self._tasks: set[asyncio.Task[Any]] = set()
        self._killer: Any = None
        self._kill_lock = asyncio.Lock()
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
        killer, self._killer = self._killer, None
        if killer is not None:
            await _quit(killer, self.connect_timeout)

    def _checkout(self, conn: AsyncmyConnection | None) -> AsyncmyConnection | None:
        if conn is not None:
            now = time.monotonic()
            idle = now - conn.last_used
            if conn.broken or now - conn.opened > self.pool_recycle or idle > self.idle_limit:
                conn.check = _RECONNECT
            elif idle > _PING_AFTER:
                conn.check = _PING
        return conn

    def acquire_nowait(self) -> AsyncmyConnection | None:
        """Return an idle connection, or ``None``."""
        return self._checkout(self._pool.acquire_nowait())

    async def acquire(self) -> AsyncmyConnection:
        """Return a connection, waiting up to ``pool_timeout``."""
        conn = await self._pool.acquire()
        self._checkout(conn)
        return conn

    def release(self, connection: BackendConnection) -> None:
        """Give a connection back; cleanup that needs the server runs in the background."""
        if not isinstance(connection, AsyncmyConnection):
            raise exceptions.InterfaceError(
                f"cannot release(): {connection!r} does not belong to this backend"
            )
        connection.last_used = time.monotonic()
        if connection.broken:
            self._pool.discard(connection)
        elif connection.needs_reset:
            self.spawn(self._reset_and_release(connection))
        else:
            self._pool.release(connection)

    async def _reset_and_release(self, conn: AsyncmyConnection) -> None:
        try:
            async with asyncio.timeout(self.connect_timeout):
                await conn.reset()
        except (Exception, asyncio.CancelledError):
            pool_logger.warning("resetting a released connection failed", exc_info=True)
            conn._lose()
        if conn.broken:
            self._pool.discard(conn)
        else:
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

    async def kill(self, thread_id: int, query_only: bool = False) -> None:
        """End a server thread (or only its statement) from the killer connection."""
        sql = f"KILL {'QUERY ' if query_only else ''}{int(thread_id)}"
        async with self._kill_lock:
            try:
                async with asyncio.timeout(self.connect_timeout):
                    killer = self._killer
                    if killer is None or not killer.connected:
                        killer = self._killer = await asyncmy.connect(**self._connect_args)
                    await killer.cursor().execute(sql)
            except mysql_errors.MySQLError as exc:
                if errno_of(exc) != _ER_NO_SUCH_THREAD:
                    pool_logger.info("%s failed: %s", sql, exc)
                if is_disconnect(exc):
                    self._drop_killer()
            except (OSError, TimeoutError) as exc:
                pool_logger.info("%s failed: %s", sql, exc)
                self._drop_killer()

    def _drop_killer(self) -> None:
        killer, self._killer = self._killer, None
        if killer is not None:
            killer.close()
