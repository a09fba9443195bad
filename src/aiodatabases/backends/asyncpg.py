"""The PostgreSQL backend: asyncpg, with asyncpg's pool and a fast lane in front of it.

Statements are compiled once to ``$n`` SQL by SQLAlchemy's asyncpg dialect (adjusted in
``_asyncpg_types``) and run as asyncpg prepared statements, which asyncpg caches per
connection; asyncpg's records are wrapped as they are, and only columns whose SQLAlchemy type
converts values (JSON, Enum, Numeric, TypeDecorator ...) are copied.

Connections come from an ``asyncpg.Pool``: it opens them, caps their number, queues waiting
tasks, replaces closed ones and closes them all at the end. Handing a connection back to it
costs a task and, by default, a reset round trip. So a released connection that no task is
waiting for, and whose session nothing could have changed, goes onto a small stack here
instead, from which the next ``acquire`` takes it without awaiting anything. A connection is
reset (``RESET ALL``, ``UNLISTEN *`` ...) only after a statement that may have changed the
session, or after its raw driver connection was handed out. A connection whose statement was
cancelled mid-flight is closed once the server has stopped the statement, never reused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections import deque
from collections.abc import Mapping, Sequence
from math import inf
from typing import Any

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information

from .. import exceptions
from .._compiler import CompiledQuery, Compiler, Kind, Query
from .._records import Record, ResultMeta
from .._url import DatabaseURL
from . import _asyncpg_types as pg
from ._groups import ALONE, GROUPABLE, Member, WriteGroups
from ._options import OptionReader
from .base import Backend, BackendConnection, PoolStats, TransactionOptions

__all__ = ["AsyncpgBackend", "AsyncpgConnection"]

logger = logging.getLogger("aiodatabases.pool")

# How long disconnect() waits for connections still in use before closing them anyway.
_CLOSE_TIMEOUT = 5.0
# A connection unused this long on the fast-lane stack goes back to asyncpg's pool, where
# its inactivity limit and minimum size apply.
_STACK_IDLE = 60.0
_PING_TIMEOUT = 5.0
# A caller waiting for a handed-over connection looks again this often, in case one went
# back to asyncpg's pool by a path that does not wake it.
_RECHECK = 0.25
# How long disconnect() tries to end, on the server, sessions it is about to abandon.
_END_TIMEOUT = 3.0
_INFO_CACHE = 2000

_FETCH = asyncpg.Connection.fetch
_FETCHROW = asyncpg.Connection.fetchrow
_EXECUTE = asyncpg.Connection.execute
_EXECUTEMANY = asyncpg.Connection.executemany
_FETCHMANY = asyncpg.Connection.fetchmany


class AsyncpgConnection(BackendConnection):
    """One asyncpg connection checked out of the pool; used by one task at a time.

    ``Connection`` guarantees that only one call runs on it at once. Once released it fails
    loudly instead of running a query on a connection another task may hold.
    """

    def __init__(self, backend: AsyncpgBackend, proxy: Any) -> None:
        self._backend = backend
        self._compiler = backend.compiler
        self._proxy = proxy
        self._con: pg.PgConnection = proxy.aiodb_unwrapped
        self._held = False
        self._txn = False  # a transaction begun by begin()
        self._emulated = False  # ... as a savepoint, inside the cursors' transaction
        self._cursors = 0  # open cursors
        self._cursor_txn = False  # a transaction begun only so that cursors can work
        self._pending = False  # the cursors' transaction must end before anything else

    @property
    def raw_connection(self) -> Any:
        """The ``asyncpg.Connection``; its session is reset when it is released."""
        self._con.aiodb_dirty = True
        return self._con

    @property
    def in_transaction(self) -> bool:
        """Whether the server has a transaction open on this connection."""
        return pg.in_transaction(self._con)

    # -- running statements -----------------------------------------------------------------

    async def _guarded(self, awaitable: Any) -> Any:
        """Await an asyncpg call; a cancelled call leaves a connection that must be closed."""
        con = self._con
        try:
            return await awaitable
        except asyncio.CancelledError:
            con.aiodb_broken = True
            raise
        except Exception as exc:
            if pg.is_disconnect(exc):
                con.aiodb_broken = True
            raise pg.translate(exc, self._backend.command_timeout) from exc

    def _replaceable(self) -> bool:
        return not (self._txn or self._cursor_txn or self._cursors or self._pending)

    async def _replace(self) -> None:
        """Swap a dead connection for a live one; only outside any transaction."""
        self._backend.discard(self._con)
        self._proxy = await self._backend.checkout()
        self._con = self._proxy.aiodb_unwrapped

    async def _call(
        self, fn: Any, sql: str, args: Sequence[Any], info: pg.SqlInfo | None, readonly: bool
    ) -> Any:
        """Run ``fn(connection, sql, *args)``.

        A connection found dead before the statement is sent, or while a read-only statement
        ran, is replaced and the statement run once more, outside transactions only. A write
        that may have run is never repeated.
        """
        if self._pending:
            await self._end_cursor_txn()
        retried = False
        while True:
            con = self._con
            if con.is_closed() and self._replaceable():
                await self._replace()
                con = self._con
            try:
                if info is not None:
                    if info.session:
                        con.aiodb_dirty = True
                    if info.untyped and args:
                        return await fn(con, await self._sql_for(sql, args, info), *args)
                return await fn(con, sql, *args)
            except asyncio.CancelledError:
                con.aiodb_broken = True
                raise
            except Exception as exc:
                dead = pg.is_disconnect(exc)
                if dead or pg.left_mid_statement(exc):
                    con.aiodb_broken = True
                if retried or not (dead and self._replaceable() and (readonly or pg.unsent(exc))):
                    raise pg.translate(exc, self._backend.command_timeout) from exc
            retried = True
            await self._replace()

    async def _sql_for(self, sql: str, args: Sequence[Any], info: pg.SqlInfo) -> str:
        """Return ``sql`` with casts on placeholders PostgreSQL would type as text."""
        if not info.untyped:
            return sql
        count = len(args)
        cast_for = pg.cast_for
        signature = tuple([cast_for(args[i]) if i < count else None for i in info.untyped])
        if not any(signature):
            return sql
        known = info.variants.get(signature)
        if known is not None:
            return known
        return await pg.learn_casts(self._con, sql, info, signature)

    def _check_held(self) -> None:
        if not self._held:
            raise exceptions.InterfaceError(
                "cannot run a query on a connection that was released to the pool"
            )

    def _prepare(
        self, query: Query, values: Mapping[str, Any] | None
    ) -> tuple[CompiledQuery | None, str, Sequence[Any]]:
        self._check_held()
        return self._compiler.prepare(query, values)

    def _meta(self, entry: CompiledQuery | None, row: Any) -> ResultMeta:
        if entry is not None:
            meta = entry.meta
            if meta is not None and meta.width == len(row):
                return meta
        return self._compiler.meta_for(entry, list(row.keys()))

    # -- the query API ----------------------------------------------------------------------

    async def fetch_all(self, query: Query, values: Mapping[str, Any] | None) -> list[Record]:
        """Run a query and return all its rows."""
        entry, sql, args = self._prepare(query, values)
        readonly = entry.readonly if entry is not None else False
        rows = await self._call(_FETCH, sql, args, self._backend.info(sql), readonly)
        if not rows:
            return []
        return self._meta(entry, rows[0]).records(rows)

    async def fetch_one(self, query: Query, values: Mapping[str, Any] | None) -> Record | None:
        """Run a query and return its first row, or ``None``."""
        entry, sql, args = self._prepare(query, values)
        readonly = entry.readonly if entry is not None else False
        row = await self._call(_FETCHROW, sql, args, self._backend.info(sql), readonly)
        if row is None:
            return None
        return self._meta(entry, row).record(row)

    async def fetch_val(
        self, query: Query, values: Mapping[str, Any] | None, column: Any = 0
    ) -> Any:
        """Run a query and return one value of its first row, or ``None``."""
        record = await self.fetch_one(query, values)
        if record is None:
            return None
        return record[column]

    async def execute(self, query: Query, values: Mapping[str, Any] | None) -> Any:
        """Run a statement; return the new key of an insert, the count of changed rows, or
        the first value a ``RETURNING`` clause (or a select) gives."""
        entry, sql, args = self._prepare(query, values)
        return await self.execute_prepared(entry, sql, args)

    async def execute_prepared(
        self, entry: CompiledQuery | None, sql: str, args: Sequence[Any]
    ) -> Any:
        """``execute`` of a statement the compiler has prepared."""
        backend = self._backend
        info = backend.info(sql)
        kind = entry.kind if entry is not None else Kind.OTHER
        if kind == Kind.SELECT or info.returning or (entry and entry.result_columns):
            readonly = entry.readonly if entry is not None else False
            row = await self._call(_FETCHROW, sql, args, info, readonly)
            if row is None:
                return None
            return self._meta(entry, row).record(row)[0]
        if kind == Kind.INSERT:
            compiled = entry.compiled if entry is not None else None
            if compiled is not None and compiled.isinsert:
                await self._call(_EXECUTE, sql, args, info, False)
                return pg.given_key(entry, args)
            if info.insert_table is not None:
                key = await self._primary_key(info.insert_table)
                if key is not None:
                    keyed = pg.returning_key(sql, key)
                    rows = await self._call(_FETCH, keyed, args, backend.info(keyed), False)
                    return rows[-1][0] if rows else None
            await self._call(_EXECUTE, sql, args, info, False)
            return None
        status = await self._call(_EXECUTE, sql, args, info, False)
        if kind == Kind.OTHER:
            backend.keys.clear()  # DDL may have changed a primary key
        return pg.row_count(status)

    async def _primary_key(self, table: str) -> str | None:
        keys = self._backend.keys
        if table in keys:
            return keys[table]
        rows = await self._call(_FETCH, pg.PRIMARY_KEY_SQL, (table,), None, True)
        key: str | None = rows[0][0] if len(rows) == 1 else None
        keys[table] = key
        return key

    async def run_group(self, members: Sequence[Member]) -> list[Any] | None:
        """Run the writes of a group commit, all of one SQL text with ``RETURNING``, in one
        pipelined ``fetchmany`` (one round trip, one implicit transaction, one commit); return
        each member's ``execute`` result, or ``None`` when the server refused the group
        (nothing was applied: each member then runs alone and meets its own error).

        Every execution also returns its member's position (a last ``RETURNING`` value),
        so a statement that returned no row (a trigger skipped it) or several is told apart.

        Raises:
            Exception: The group's outcome is unknown (the connection was lost, or the client
                timeout fired, after it was sent): every member gets that error, as alone.
        """
        first = members[0]
        width = len(first.args)
        marked = f"{first.sql}, ${width + 1}::int4"
        batch = [(*member.args, position) for position, member in enumerate(members)]
        try:
            rows = await self._call(_FETCHMANY, marked, (batch,), None, False)
        except exceptions.Error as exc:
            cause = exc.__cause__
            if cause is not None and (
                (isinstance(cause, asyncpg.PostgresError) and not pg.is_disconnect(cause))
                or pg.unsent(cause)
            ):
                # The server rolled the implicit transaction back (asyncpg too, for a value
                # it could not encode), or nothing was sent.
                return None
            raise
        found: dict[int, Any] = {}
        for row in rows:
            found.setdefault(row[-1], row)
        results: list[Any] = []
        for position, member in enumerate(members):
            row = found.get(position)
            if row is None:
                results.append(None)
                continue
            values = tuple(row)[:-1]
            meta = member.entry.meta
            if meta is None or meta.width != len(values):
                meta = self._compiler.meta_for(member.entry, list(row.keys())[:-1])
            results.append(meta.record(values)[0])
        return results

    async def execute_many(self, query: Query, values: Sequence[Mapping[str, Any]]) -> None:
        """Run a statement for every set of values in one ``executemany``, atomically."""
        if not values:
            return
        if isinstance(query, str):
            entry = self._compiler.text(query)
            rows: Sequence[Any] = self._compiler.text_many(entry, values)
        else:
            entry, compiled, extracted, _ = self._compiler.core(query, values[0], many=True)
            rows = self._compiler.core_many(entry, compiled, extracted, values)
        self._check_held()
        await self._call(_EXECUTEMANY, entry.sql, (rows,), None, False)

    async def cursor(self, query: Query, values: Mapping[str, Any] | None) -> pg.Cursor:
        """Open a server-side cursor whose rows are fetched in batches.

        PostgreSQL cursors live in a transaction: outside one, a transaction is begun for the
        cursors and committed when the last of them finishes, so that rows written inside
        the loop are kept as they would be without it. When the loop is left early it is
        committed before the connection's next statement, or on release (where a failure can
        only be logged).
        """
        entry, sql, args = self._prepare(query, values)
        return pg.Cursor(self, entry, sql, args)

    async def _open_cursor_scope(self) -> None:
        if self._pending:
            await self._end_cursor_txn()
        if not self._cursors and not pg.in_transaction(self._con):
            await self._control("BEGIN")
            self._cursor_txn = True
        self._cursors += 1

    async def _close_cursor_scope(self) -> None:
        self._cursors -= 1
        await self._end_cursor_txn()

    def _abandon_cursor_scope(self) -> None:
        self._cursors -= 1
        self._pending = self._cursor_txn and not self._cursors and not self._emulated

    async def _end_cursor_txn(self) -> None:
        """Commit the cursors' transaction once neither a cursor nor a transaction needs it."""
        self._pending = False
        if self._cursor_txn and not self._cursors and not self._emulated:
            self._cursor_txn = False
            await self._control("COMMIT")

    # -- transactions -----------------------------------------------------------------------

    async def _control(self, sql: str) -> str:
        status: str = await self._guarded(self._con.execute(sql))
        return status

    async def begin(self, options: TransactionOptions) -> None:
        """Open a transaction: ``BEGIN`` with the isolation level and modes asked for."""
        sql = pg.begin_sql(options)
        if self._pending:
            await self._end_cursor_txn()
        if self._cursor_txn and sql != "BEGIN":
            # An iterate() loop left with break closes its cursor only when the event loop
            # finalizes the generator: give it that turn.
            await asyncio.sleep(0)
            if self._pending:
                await self._end_cursor_txn()
        if self._cursor_txn:
            if sql != "BEGIN":
                raise exceptions.TransactionStateError(
                    "cannot begin() a transaction with options inside iterate() run outside "
                    "a transaction; start the transaction before iterating"
                )
            await self._control("SAVEPOINT aiodatabases_txn")
            self._emulated = self._txn = True
            return
        if pg.in_transaction(self._con):
            raise exceptions.TransactionStateError(
                "cannot begin(): a transaction is already open on this connection "
                "(opened with a raw BEGIN?); commit or roll it back first"
            )
        if self._con.is_closed():
            await self._replace()
        try:
            await self._control(sql)
        except exceptions.OperationalError as exc:
            if not (exc.__cause__ is not None and pg.is_disconnect(exc.__cause__)):
                raise
            await self._replace()  # BEGIN does nothing on a dead connection: safe to repeat
            await self._control(sql)
        self._txn = True

    async def commit(self) -> None:
        """Commit the transaction.

        Raises:
            OperationalError: The commit failed, or PostgreSQL rolled the transaction back
                instead because one of its statements had failed.
        """
        if self._emulated:
            await self._control("RELEASE SAVEPOINT aiodatabases_txn")
            self._emulated = self._txn = False
            await self._end_cursor_txn()
            return
        try:
            status = await self._control("COMMIT")
        finally:
            self._txn = False
        if status == "ROLLBACK":
            error = exceptions.OperationalError(
                "cannot commit(): a statement of the transaction failed, so PostgreSQL rolled "
                "the whole transaction back; run it again"
            )
            error.sqlstate = "25P02"
            raise error

    async def rollback(self) -> None:
        """Roll back the transaction; on a dead connection there is nothing left to undo."""
        self._txn = False
        if self._emulated:
            self._emulated = False
            await self._control(
                "ROLLBACK TO SAVEPOINT aiodatabases_txn; RELEASE SAVEPOINT aiodatabases_txn"
            )
            await self._end_cursor_txn()
            return
        con = self._con
        if con.is_closed():
            return
        try:
            await con.execute("ROLLBACK")  # after a cancelled statement, waits for it to stop
        except asyncio.CancelledError:
            con.aiodb_broken = True
            raise
        except Exception:
            # Closing the connection makes the server roll the transaction back.
            con.aiodb_broken = True
            logger.debug("ROLLBACK failed; the connection will be closed", exc_info=True)

    async def savepoint(self, name: str) -> None:
        """Open a savepoint."""
        await self._control(f"SAVEPOINT {name}")

    async def release_savepoint(self, name: str) -> None:
        """Release a savepoint, keeping its work."""
        await self._control(f"RELEASE SAVEPOINT {name}")

    async def rollback_to_savepoint(self, name: str) -> None:
        """Undo a savepoint's work and close it."""
        await self._control(f"ROLLBACK TO SAVEPOINT {name}; RELEASE SAVEPOINT {name}")


class AsyncpgBackend(Backend):
    """PostgreSQL through asyncpg; one per ``Database``, shared by its tasks.

    Options (URL query or keyword; keywords win): ``min_size`` (default 1) and ``max_size``
    (default 10) of the pool; ``pool_timeout`` (seconds to wait for a connection, default
    30); ``command_timeout`` (seconds a statement may run, default 60); ``timeout`` (seconds
    to open a connection, default 10); ``ssl`` (``true``, ``false``, a libpq mode such as
    ``require`` or ``verify-full``, or an ``ssl.SSLContext``; ``sslmode`` is the same);
    ``pre_ping`` (a connection unused for this many seconds is checked with a round trip
    before use; default 30, ``none`` never checks); and by name the asyncpg options
    ``statement_cache_size``, ``max_cached_statement_lifetime``,
    ``max_cacheable_statement_size``, ``max_queries``, ``max_inactive_connection_lifetime``,
    ``server_settings``, ``passfile``, ``direct_tls``, ``target_session_attrs``,
    ``krbsrvname`` and ``gsslib``. Any other option raises ``ConfigurationError``.
    """

    def __init__(self, url: DatabaseURL, options: dict[str, Any]) -> None:
        self.url = url
        dialect = pg.PostgreSQLDialect(paramstyle="numeric_dollar")  # type: ignore[no-untyped-call]  # SQLAlchemy's PG dialects are untyped
        self.compiler = Compiler(dialect)
        reader = OptionReader(url.scheme, url.options, options)
        self.min_size = reader.int("min_size", 1)
        self.max_size = reader.int("max_size", 10, minimum=1)
        if self.min_size > self.max_size:
            raise exceptions.ConfigurationError(
                f"min_size={self.min_size} is larger than max_size={self.max_size}"
            )
        self.pool_timeout = reader.float("pool_timeout", 30.0)
        self.command_timeout = reader.float("command_timeout", 60.0)
        self.pre_ping = reader.float("pre_ping", 30.0)
        group_commit = reader.bool("group_commit", True)
        self._connect_kwargs, self._pool_kwargs = pg.connect_options(
            url, reader, self.command_timeout
        )
        reader.reject_unknown()
        self._pool: Any = None
        self._idle: list[AsyncpgConnection] = []  # the fast lane, most recently used last
        self._out = 0  # connections held by callers
        self._waiting = 0  # callers waiting for asyncpg's pool
        # Callers waiting for a connection, in order of arrival: release() hands a clean
        # connection straight to the first, or wakes it to look in asyncpg's pool.
        self._handoff: deque[_Ticket] = deque()
        self._opening = 0  # new connections being opened for callers (see _take)
        self._closing = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._trim_handle: asyncio.TimerHandle | None = None
        self._line_timer: asyncio.TimerHandle | None = None  # see _line_tick
        self._infos: dict[str, pg.SqlInfo] = {}
        # Every connection handed out, so that disconnect() can end their server sessions.
        self._handed_out: weakref.WeakSet[pg.PgConnection] = weakref.WeakSet()
        self.keys: dict[str, str | None] = {}  # primary keys of raw INSERT targets
        self._groups = _GroupCommit(self) if group_commit else None

    def info(self, sql: str) -> pg.SqlInfo:
        """Return what is known about a SQL text, analysing it the first time."""
        info = self._infos.get(sql)
        if info is None:
            if len(self._infos) >= _INFO_CACHE:
                self._infos.clear()
            info = self._infos[sql] = pg.analyze(sql)
        return info

    # -- lifecycle --------------------------------------------------------------------------

    async def connect(self) -> None:
        """Open asyncpg's pool with ``min_size`` connections."""
        self._closing = False
        try:
            self._pool = await asyncpg.create_pool(
                min_size=self.min_size,
                max_size=self.max_size,
                reset=pg.reset_connection,
                connection_class=pg.PgConnection,
                **self._pool_kwargs,
                **self._connect_kwargs,
            )
        except TimeoutError:
            raise self._connect_timeout() from None
        except Exception as exc:
            if isinstance(exc, ValueError | TypeError) and not isinstance(
                exc, asyncpg.PostgresError
            ):
                raise exceptions.ConfigurationError(f"invalid PostgreSQL option: {exc}") from exc
            raise pg.translate(exc) from exc

    def _connect_timeout(self) -> exceptions.OperationalError:
        return exceptions.OperationalError(
            f"could not connect to {self.url.obscure_password} within "
            f"{self._connect_kwargs.get('timeout')} s (option timeout)"
        )

    async def disconnect(self) -> None:
        """Close every connection; those still in use get a few seconds to come back."""
        pool = self._pool
        if pool is None:
            return
        self._closing = True
        while self._handoff:
            ticket = self._handoff.popleft()
            ticket.gone = True  # out of the line; it sees the disconnect when it wakes
            ticket.wake()
        if self._line_timer is not None:
            self._line_timer.cancel()
            self._line_timer = None
        if self._trim_handle is not None:
            self._trim_handle.cancel()
            self._trim_handle = None
        idle, self._idle = self._idle, []
        for conn in idle:
            self._spawn(self._give_back(conn))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _CLOSE_TIMEOUT
        closing: asyncio.Future[None] | None = None
        try:
            while self._tasks and loop.time() < deadline:
                await asyncio.wait(set(self._tasks), timeout=deadline - loop.time())
            # Not cancelled on timeout: asyncpg's close() would then terminate the
            # connections before their sessions are ended on the server.
            closing = asyncio.ensure_future(pool.close())
            await asyncio.wait({closing}, timeout=max(deadline - loop.time(), 0.0))
            if not closing.done():
                logger.warning("connections still in use at disconnect() were closed")
                await self._end_sessions()
                closing.cancel()  # asyncpg's close() then terminates every connection
                await asyncio.wait({closing})
            if not closing.cancelled() and closing.exception() is not None:
                logger.warning("closing the pool failed", exc_info=closing.exception())
                pool.terminate()
        except BaseException:
            pool.terminate()
            if closing is not None:
                closing.cancel()
            raise
        finally:
            self._pool = None

    async def _end_sessions(self) -> None:
        """Terminate on the server the sessions of connections that are still open.

        Closing a socket ends an idle session at once, but a session running a statement
        notices only when the statement ends, which may be minutes away, holding its locks
        and its transaction until then. A side connection asks the server to end them.
        """
        pids = [con.get_server_pid() for con in list(self._handed_out) if not con.is_closed()]
        if not pids:
            return
        try:
            async with asyncio.timeout(_END_TIMEOUT):
                side = await asyncpg.connect(**self._connect_kwargs)
                try:
                    await side.execute(
                        "SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid", pids
                    )
                finally:
                    side.terminate()
        except Exception:
            logger.warning(
                "could not end the sessions of connections in use at disconnect(); their "
                "running statements go on until they finish",
                exc_info=True,
            )

    # -- acquire and release ----------------------------------------------------------------

    def _require_pool(self) -> Any:
        if self._pool is None or self._closing:
            raise exceptions.NotConnectedError("cannot acquire(): the database is disconnected")
        return self._pool

    def acquire_nowait(self) -> AsyncpgConnection | None:
        """Return a connection from the fast lane, or ``None``: then call ``acquire()``."""
        idle = self._idle
        while idle and not self._closing:
            conn = idle[-1]
            con = conn._con
            if con.is_closed():
                idle.pop()
                con.terminate()
                continue
            if self.pre_ping is not None and time.monotonic() - con.aiodb_used > self.pre_ping:
                return None  # acquire() pings it first
            idle.pop()
            conn._held = True
            self._out += 1
            return conn
        return None

    async def acquire(self) -> AsyncpgConnection:
        """Return a connection, waiting up to ``pool_timeout`` for one.

        Raises:
            PoolTimeoutError: No connection became free in time.
            NotConnectedError: The database is disconnected.
            OperationalError: A new connection could not be opened.
        """
        self._require_pool()
        while self._idle:
            conn = self._idle.pop()
            if await self._alive(conn._con):
                break
        else:
            if self._handoff or self._must_wait():
                handed = await self._wait_handoff()
                if handed is not None:
                    return handed
                if self._idle:
                    # Released while this caller waited out of the line (disconnect() had
                    # emptied it): release() hands connections only to callers in line.
                    return await self.acquire()
            conn = AsyncpgConnection(self, await self.checkout())
        conn._held = True
        self._out += 1
        return conn

    def _must_wait(self) -> bool:
        """Whether a caller without a connection has to queue for one.

        It has to while callers hold all ``max_size`` connections, and while others wait in
        asyncpg's pool, unless a new connection may be opened: asyncpg's queue lets a
        newcomer take a connection that was just put back for the caller it woke, and that
        caller then queues again behind everyone; under steady load the first callers of a
        growing pool waited there until the load stopped.
        """
        if self._out >= self.max_size:
            return True
        return bool(self._waiting) and not self._may_open()

    def _may_open(self) -> bool:
        """Whether asyncpg's pool has a slot for a connection that nobody is opening yet."""
        pool = self._pool
        return pool is not None and pool.get_size() + self._opening < self.max_size

    async def _wait_handoff(self) -> AsyncpgConnection | None:
        """Wait in line until ``release()`` hands this caller a connection, or its turn comes
        to take one from asyncpg's pool (``_must_wait()`` is false and it is first).

        Passing a just-used connection from one task to the next directly saves the trip
        through asyncpg's pool (a task, its queue and timeouts) on every call of a busy pool.
        A caller keeps its place in the line however often it is woken to look again. The
        callers in line share one timer (``_line_tick``) that wakes the first of them to look
        again and the others at their deadlines, rather than each arming its own for every
        wait. Returns the connection, already counted as held, or ``None`` when the caller
        should take one from asyncpg's pool instead.
        """
        loop = asyncio.get_running_loop()
        limit = self.pool_timeout
        ticket = _Ticket(inf if limit is None else loop.time() + limit)
        handoff = self._handoff
        handoff.append(ticket)
        try:
            while True:
                if ticket.conn is not None:
                    return ticket.conn
                self._require_pool()
                # First in line (or the line was emptied by a disconnect and reconnect).
                first = self._first_in_line()
                if first in (None, ticket) and not self._must_wait():
                    if first is not None:
                        handoff.popleft()
                    ticket.gone = True
                    self._feed()  # the next in line may go on too (another slot may be free)
                    return None
                if loop.time() >= ticket.deadline:
                    raise exceptions.PoolTimeoutError(
                        f"no connection became free within {self.pool_timeout} s "
                        f"(all {self.max_size} in use); raise max_size or pool_timeout"
                    )
                ticket.future = waiter = loop.create_future()
                if ticket.gone:
                    # Out of the line (disconnect() emptied it, and a connect() followed): the
                    # line's timer does not see this caller, so it keeps a timer of its own.
                    timer = loop.call_at(min(loop.time() + _RECHECK, ticket.deadline), ticket.wake)
                    try:
                        await waiter
                    finally:
                        timer.cancel()
                else:
                    if self._line_timer is None:
                        self._line_timer = loop.call_at(
                            min(loop.time() + _RECHECK, ticket.deadline), self._line_tick
                        )
                    await waiter
        except BaseException:
            if not ticket.gone:
                ticket.gone = True
                with contextlib.suppress(ValueError):
                    handoff.remove(ticket)
                self._feed()  # the next in line may be able to go on now
            late, ticket.conn = ticket.conn, None
            if late is not None:
                self.release(late)  # handed over just as we were cancelled
            raise

    def _line_tick(self) -> None:
        """The line's timer: wake the first caller in line to look again (a slot may have come
        free in asyncpg's pool unannounced) and every caller whose deadline has passed; armed
        again, for the nearest deadline or the next look, while anyone is in line."""
        self._line_timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        nearest = inf
        anyone = False
        for ticket in self._handoff:
            if ticket.gone:
                continue
            if not anyone or ticket.deadline <= now:
                ticket.wake()
            if ticket.deadline > now:
                nearest = min(nearest, ticket.deadline)
            anyone = True
        if anyone:
            self._line_timer = loop.call_at(min(now + _RECHECK, nearest), self._line_tick)

    def _feed(self) -> None:
        """Wake the first caller in line to look again (a connection went to asyncpg's pool,
        or a slot opened)."""
        first = self._first_in_line()
        if first is not None:
            first.wake()

    def _first_in_line(self) -> _Ticket | None:
        """The first caller still in line; tickets of those gone are dropped on the way."""
        handoff = self._handoff
        while handoff and handoff[0].gone:
            handoff.popleft()
        return handoff[0] if handoff else None

    async def checkout(self) -> Any:
        """Take a working connection (asyncpg's pool proxy) out of asyncpg's pool."""
        pool = self._require_pool()
        for _ in range(self.max_size + 1):
            self._waiting += 1
            try:
                async with asyncio.timeout(self.pool_timeout) as deadline:
                    proxy = await self._take(pool)
            except TimeoutError:
                if not deadline.expired():
                    raise self._connect_timeout() from None
                raise exceptions.PoolTimeoutError(
                    f"no connection became free within {self.pool_timeout} s "
                    f"(all {self.max_size} in use); raise max_size or pool_timeout"
                ) from None
            except Exception as exc:
                if self._pool is None or self._closing:
                    raise exceptions.NotConnectedError(
                        "cannot acquire(): the database was disconnected"
                    ) from None
                raise pg.translate(exc) from exc
            finally:
                self._waiting -= 1
            con = _unwrap(proxy)
            if con is None:
                continue  # closed while being handed over; asyncpg took its slot back
            if await self._alive(con):
                self._handed_out.add(con)
                return proxy
        raise exceptions.OperationalError("could not get a working connection to PostgreSQL")

    async def _take(self, pool: Any) -> Any:
        """``pool.acquire()``; one that opens a new connection finishes even if the caller
        is cancelled or times out meanwhile, and the connection then goes back to the pool.

        asyncpg opens one inside ``acquire()`` whenever the slot it takes holds none: for a
        caller that finds no idle connection, and for one handed the slot of a connection
        that was closed (the waiters of a busy pool get those too). Abandoning a connection
        halfway through its handshake would waste the server's work and leave asyncpg's
        handshake future unread (the loop's exception handler then reports "unexpected
        connection_lost() call"). Only when every slot holds an open connection and one of
        them is idle is there nothing to open.
        """
        if pool.get_idle_size() and pool.get_size() >= self.max_size:
            return await pool.acquire()
        opens = self._may_open()
        if opens:
            self._opening += 1
        opening = self._spawn(_acquire(pool))
        if opens:
            opening.add_done_callback(self._opened)
        try:
            return await asyncio.shield(opening)
        except BaseException:
            opening.add_done_callback(self._give_back_orphan)
            raise

    def _opened(self, opening: asyncio.Task[Any]) -> None:
        self._opening -= 1
        self._feed()

    def _give_back_orphan(self, opening: asyncio.Task[Any]) -> None:
        if (
            not opening.cancelled()
            and opening.exception() is None
            and _unwrap(opening.result()) is not None
        ):
            self._spawn(self._give_back(AsyncpgConnection(self, opening.result())))

    async def _alive(self, con: pg.PgConnection) -> bool:
        """Whether a connection works; one unused for longer than ``pre_ping`` is pinged.

        A dead one is closed; asyncpg's pool opens a new one in its place.
        """
        if not con.is_closed():
            if self.pre_ping is None or time.monotonic() - con.aiodb_used <= self.pre_ping:
                return True
            try:
                await con.execute("SELECT 1", timeout=_PING_TIMEOUT)
            except asyncio.CancelledError:
                con.aiodb_broken = True
                self.discard(con)
                raise
            except Exception:
                logger.info("a pooled connection failed its ping; replacing it")
            else:
                con.aiodb_used = time.monotonic()
                return True
        self.discard(con)
        return False

    def discard(self, con: pg.PgConnection) -> None:
        """Close a connection checked out of asyncpg's pool; never waits."""
        if con.aiodb_broken and not con.is_closed():
            self._spawn(pg.settle_and_close(con))
        else:
            con.terminate()  # also hands its slot back to asyncpg's pool

    def release(self, connection: BackendConnection) -> None:
        """Give a connection back; never waits (slow cases finish in a background task)."""
        if not isinstance(connection, AsyncpgConnection) or not connection._held:
            return
        connection._held = False
        self._out -= 1
        con = connection._con
        if con.is_closed():
            con.terminate()
            self._feed()
            return
        if (
            self._waiting  # hand it to asyncpg's pool, where the waiters are
            or self._closing
            or con.aiodb_broken
            or con.aiodb_dirty
            or connection._pending
            or connection._cursor_txn
            or connection._txn
            or con.is_in_transaction()
        ):
            self._spawn(self._give_back(connection))
            self._feed()
            return
        handoff = self._handoff
        while handoff:
            ticket = handoff.popleft()
            if not ticket.gone:
                ticket.gone = True
                connection._held = True
                self._out += 1
                ticket.conn = connection
                ticket.wake()
                return
        con.aiodb_used = time.monotonic()
        self._idle.append(connection)
        if self._trim_handle is None:
            self._trim_handle = asyncio.get_running_loop().call_later(_STACK_IDLE, self._trim)

    def _trim(self) -> None:
        self._trim_handle = None
        idle = self._idle
        cutoff = time.monotonic() - _STACK_IDLE
        while idle and idle[0]._con.aiodb_used < cutoff:
            self._spawn(self._give_back(idle.pop(0)))
        if idle:
            self._trim_handle = asyncio.get_running_loop().call_later(_STACK_IDLE, self._trim)

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _give_back(self, conn: AsyncpgConnection) -> None:
        """Return a connection to asyncpg's pool, ending what is left open on it first."""
        con = conn._con
        if con.aiodb_broken or con.is_closed() or self._pool is None:
            await pg.settle_and_close(con)
            return
        try:
            if conn._cursor_txn and not conn._txn:
                # Rows written inside an abandoned iterate() loop are kept, as they would be
                # had each statement committed by itself.
                conn._cursor_txn = conn._pending = False
                await con.execute("COMMIT", timeout=pg.SETTLE_TIMEOUT)
            elif con.is_in_transaction():
                await con.execute("ROLLBACK", timeout=pg.SETTLE_TIMEOUT)
            await self._pool.release(conn._proxy, timeout=pg.SETTLE_TIMEOUT)
        except Exception:
            if con.is_closed():  # the server ended it meanwhile: nothing left to return
                logger.debug("a connection closed on its way back to the pool", exc_info=True)
            else:
                logger.warning("a connection could not be returned cleanly; closed", exc_info=True)
            con.terminate()

    async def execute_detached(self, query: Query, values: Mapping[str, Any] | None) -> Any:
        """Run one statement on a pooled connection held only for it; a write with
        ``RETURNING`` made while other tasks write too joins a group commit."""
        entry, sql, args = self.compiler.prepare(query, values)
        groups = self._groups
        if groups is not None and self._groupable(entry, sql, args) and groups.wanted():
            outcome = await groups.run(entry, sql, args)
            if outcome is not ALONE:
                return outcome
        connection = self.acquire_nowait() or await self.acquire()
        try:
            return await connection.execute_prepared(entry, sql, args)
        finally:
            self.release(connection)

    def _groupable(self, entry: CompiledQuery, sql: str, args: Sequence[Any]) -> bool:
        """Whether a statement may run in a group: an insert, update or delete whose SQL
        ends with its ``RETURNING`` clause, changes no session state and needs no casts."""
        if entry.kind not in GROUPABLE:
            return False
        info = self.info(sql)
        if not info.returning or info.session or not _ends_in_returning(sql):
            return False
        if info.untyped:
            cast_for = pg.cast_for
            count = len(args)
            if any(cast_for(args[i]) for i in info.untyped if i < count):
                return False
        return True

    def pool_stats(self) -> PoolStats:
        """Return the pool's counts; ``in_use`` counts connections held by callers."""
        pool = self._pool
        if pool is None:
            return PoolStats(0, 0, 0, self.max_size)
        idle = len(self._idle) + pool.get_idle_size()
        return PoolStats(pool.get_size(), idle, self._out, self.max_size)


def _ends_in_returning(sql: str) -> bool:
    """Whether one more ``RETURNING`` value can be appended to ``sql``: it has a
    ``RETURNING`` clause, and no comment or ``;`` follows the last one."""
    at = sql.upper().rfind("RETURNING")
    if at < 0:
        return False
    tail = sql[at:]
    return ";" not in tail and "--" not in tail and "/*" not in tail


class _GroupCommit(WriteGroups):
    """Runs the writes that several tasks make at once in one round trip and one commit.

    Each autocommitted write costs a round trip and a commit that waits for the server's log
    flush. Writes of one SQL text with ``RETURNING`` (a Core ``insert()`` returns its new key
    that way) that arrive together run in one pipelined ``fetchmany`` on one pooled
    connection: one implicit transaction. If the server refuses any of them (a constraint, a
    statement timeout), it rolls the whole group back and every statement runs again alone,
    so each caller sees its own error; if the connection is lost after the group was sent,
    nobody can know whether it committed, and every member gets that error, as each would
    have alone. Groups of one, and statements of other texts, run alone.
    """

    def __init__(self, backend: AsyncpgBackend) -> None:
        super().__init__()
        self._backend = backend

    async def run_members(self, members: list[Member]) -> None:
        texts: dict[str, list[Member]] = {}
        for member in members:
            texts.setdefault(member.sql, []).append(member)
        texts = {sql: group for sql, group in texts.items() if len(group) > 1}
        if not texts:
            return
        backend = self._backend
        connection = backend.acquire_nowait() or await backend.acquire()
        try:
            for group in texts.values():
                live = [m for m in group if not m.future.done()]
                if len(live) < 2:
                    continue
                try:
                    results = await connection.run_group(live)
                except BaseException as exc:
                    # Sent, and nobody knows whether it committed: no member may run again.
                    error = (
                        exc
                        if isinstance(exc, Exception)
                        else exceptions.OperationalError(
                            "the group commit was interrupted; its outcome is unknown"
                        )
                    )
                    for member in live:
                        if not member.future.done():
                            member.future.set_exception(error)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                if results is not None:
                    for member, result in zip(live, results, strict=True):
                        if not member.future.done():
                            member.future.set_result(result)
        finally:
            backend.release(connection)


class _Ticket:
    """A caller's place in the line for a connection (``AsyncpgBackend._wait_handoff``)."""

    __slots__ = ("conn", "deadline", "future", "gone")

    def __init__(self, deadline: float) -> None:
        self.future: asyncio.Future[None] | None = None
        self.conn: AsyncpgConnection | None = None  # handed over by release()
        self.gone = False  # out of the line: served, left, cancelled, or the line was emptied
        self.deadline = deadline  # loop time when pool_timeout runs out (inf: never)

    def wake(self) -> None:
        """Let the caller look again (or take what was handed to it)."""
        future = self.future
        if future is not None and not future.done():
            future.set_result(None)


async def _acquire(pool: Any) -> Any:
    return await pool.acquire()


def _unwrap(proxy: Any) -> pg.PgConnection | None:
    """The connection behind an asyncpg pool proxy, or ``None`` once the proxy is detached.

    A connection that closes (the server ended its session) goes back to asyncpg's pool at
    once, detaching its proxy; that can happen between ``pool.acquire()`` finishing and its
    caller resuming.
    """
    con: pg.PgConnection | None = getattr(proxy, "aiodb_unwrapped", None)
    return con
