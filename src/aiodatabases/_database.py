"""Database: a URL, a backend and its pool, and the routing of calls to connections."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from types import TracebackType
from typing import Any, TypeVar

from ._compiler import Query
from ._connection import Connection
from ._records import Record
from ._retry import check_retry_options, run_in_transaction
from ._transaction import Transaction, TransactionState
from ._url import DatabaseURL
from .backends import SCHEMES, create_backend
from .backends.base import Backend, PoolStats
from .exceptions import NotConnectedError

__all__ = ["Database"]

T = TypeVar("T")


class Database:
    """A database: connect it once, then query it from any task.

    Each task runs its queries on a connection of its own from the pool, so concurrent
    tasks run in parallel; inside ``async with database.transaction():`` a task's queries
    (and those of child tasks it starts there) run in that transaction. Safe to share
    between tasks.

    Args:
        url: The database URL; its scheme picks the backend.
        force_rollback: Run everything on one connection inside a transaction that is
            rolled back at ``disconnect()`` (test isolation).
        **options: Pool, timeout and driver options; see the backend's documentation.

    Raises:
        ConfigurationError: The URL or an option is wrong, or the driver is not installed.
    """

    SUPPORTED_BACKENDS = {
        scheme: f"aiodatabases.backends.{m}:{c}" for scheme, (m, c, *_) in SCHEMES.items()
    }

    def __init__(
        self, url: str | DatabaseURL, *, force_rollback: bool = False, **options: Any
    ) -> None:
        self.url = DatabaseURL(url)
        self.options = options
        self.is_connected = False
        self._force_rollback = force_rollback
        self._backend: Backend = create_backend(self.url, dict(options))
        self._used = False
        self._connection_var: ContextVar[tuple[asyncio.Task[Any] | None, Connection] | None] = (
            ContextVar(f"aiodatabases.connection.{id(self)}", default=None)
        )
        self._transaction_var: ContextVar[Transaction | None] = ContextVar(
            f"aiodatabases.transaction.{id(self)}", default=None
        )
        self._global_connection: Connection | None = None
        self._global_transaction: Transaction | None = None
        self._lifecycle = asyncio.Lock()

    # -- lifecycle --------------------------------------------------------------------------

    async def connect(self) -> None:
        """Open the pool; does nothing if already connected."""
        async with self._lifecycle:
            if self.is_connected:
                return
            if self._used:
                self._backend = create_backend(self.url, dict(self.options))
            self._used = True
            await self._backend.connect()
            self.is_connected = True
            if self._force_rollback:
                connection = Connection(self, self._backend)
                transaction = Transaction(lambda: connection, force_rollback=True)
                transaction._is_root = True
                try:
                    await transaction.start()
                except BaseException:
                    await self._backend.disconnect()
                    self.is_connected = False
                    raise
                self._global_connection = connection
                self._global_transaction = transaction

    async def disconnect(self) -> None:
        """Close the pool (rolling back a ``force_rollback`` transaction); idempotent."""
        async with self._lifecycle:
            if not self.is_connected:
                return
            try:
                transaction = self._global_transaction
                if transaction is not None and transaction.state is TransactionState.ACTIVE:
                    connection = self._global_connection
                    assert connection is not None
                    while connection._transactions and connection._transactions[-1] is not (
                        transaction
                    ):
                        inner = connection._transactions[-1]
                        await connection._end_transaction(inner, commit=False)
                    await connection._end_transaction(transaction, commit=False)
            finally:
                self._global_transaction = None
                self._global_connection = None
                self.is_connected = False
                await self._backend.disconnect()

    async def __aenter__(self) -> Database:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        await self.disconnect()

    @contextlib.contextmanager
    def force_rollback(self) -> Iterator[None]:
        """Within the block, ``connect()`` opens the database in force-rollback mode."""
        initial = self._force_rollback
        self._force_rollback = True
        try:
            yield
        finally:
            self._force_rollback = initial

    def pool_stats(self) -> PoolStats:
        """Return the pool's counts: open, idle and checked-out connections."""
        return self._backend.pool_stats()

    # -- connections ------------------------------------------------------------------------

    def connection(self) -> Connection:
        """Return the current task's connection (the transaction's, inside one)."""
        if self._global_connection is not None:
            return self._global_connection
        transaction = self._transaction_var.get()
        if transaction is not None and transaction._state is TransactionState.ACTIVE:
            connection = transaction._connection
            assert connection is not None
            return connection
        task = asyncio.current_task()
        current = self._connection_var.get()
        if current is not None and current[0] is task and current[1]._backend is self._backend:
            return current[1]
        connection = Connection(self, self._backend)
        self._connection_var.set((task, connection))
        return connection

    def _held(self) -> Connection | None:
        """The connection this task already holds, if any: the fast path takes none."""
        if self._global_connection is not None:
            return self._global_connection
        transaction = self._transaction_var.get()
        if transaction is not None and transaction._state is TransactionState.ACTIVE:
            return transaction._connection
        current = self._connection_var.get()
        if current is not None and current[1]._holds and current[0] is asyncio.current_task():
            return current[1]
        return None

    def _require_backend(self, method: str) -> Backend:
        if not self.is_connected:
            raise NotConnectedError(
                f"cannot {method}(): the database is not connected; "
                "call `await database.connect()` first"
            )
        return self._backend

    def transaction(self, *, force_rollback: bool = False, **options: Any) -> Transaction:
        """Return a transaction on the current task's connection (a savepoint if nested).

        Options: ``isolation`` (``"serializable"``, ``"repeatable_read"``,
        ``"read_committed"``, ``"read_uncommitted"``), ``readonly``, ``deferrable``.
        """
        return Transaction(self.connection, force_rollback=force_rollback, **options)

    def _in_transaction(self) -> bool:
        """Whether this task's queries already run inside a transaction."""
        if self._global_transaction is not None:
            return True
        transaction = self._transaction_var.get()
        return transaction is not None and transaction._state is TransactionState.ACTIVE

    async def run_in_transaction(
        self,
        func: Callable[[Connection], Awaitable[T]],
        /,
        *,
        attempts: int = 5,
        backoff: float = 0.05,
        max_backoff: float = 2.0,
        **options: Any,
    ) -> T:
        """Run ``await func(connection)`` in a transaction; run it again if the server asks.

        When the transaction fails with an error whose ``retryable`` is true (a
        serialization failure or deadlock, SQLSTATE 40001/40P01; MySQL errors 1213 and
        1205; a busy SQLite database), everything ``func`` did was rolled back, so the whole
        function runs again on a fresh transaction, after a random delay of up to
        ``backoff * 2**n`` seconds (never more than ``max_backoff``), at most ``attempts``
        times in all. Any other error, and the last retryable one, propagates. ``func``
        must therefore do nothing outside the database that cannot be done twice. Inside
        a transaction already open on this task it runs once, in a savepoint, and does
        not retry: only the outermost transaction can be run again.

        Args:
            func: An async function taking the transaction's connection; its result is
                returned.
            attempts: How many times to run it at most (>= 1).
            backoff: The first retry's delay ceiling, in seconds; it doubles each time.
            max_backoff: The largest delay ceiling, in seconds.
            **options: Transaction options: ``isolation``, ``readonly``, ``deferrable``.

        Raises:
            ConfigurationError: ``attempts``, a delay or a transaction option is invalid.
            DatabaseError: ``func`` or the commit failed; retryable errors only once
                ``attempts`` are used up.
        """
        check_retry_options(attempts, backoff, max_backoff)
        Transaction(self.connection, **options)  # validates the options before any attempt
        self._require_backend("run_in_transaction")
        return await run_in_transaction(
            self,
            func,
            attempts=attempts,
            backoff=backoff,
            max_backoff=max_backoff,
            options=options,
        )

    # -- queries ----------------------------------------------------------------------------

    async def fetch_all(
        self, query: Query, values: Mapping[str, Any] | None = None
    ) -> list[Record]:
        """Run a query and return all its rows."""
        connection = self._held()
        if connection is not None:
            return await connection.fetch_all(query, values)
        backend = self._require_backend("fetch_all")
        raw = backend.acquire_nowait() or await backend.acquire()
        try:
            return await raw.fetch_all(query, values)
        finally:
            backend.release(raw)

    async def fetch_one(
        self, query: Query, values: Mapping[str, Any] | None = None
    ) -> Record | None:
        """Run a query and return its first row, or ``None``."""
        connection = self._held()
        if connection is not None:
            return await connection.fetch_one(query, values)
        backend = self._require_backend("fetch_one")
        raw = backend.acquire_nowait() or await backend.acquire()
        try:
            return await raw.fetch_one(query, values)
        finally:
            backend.release(raw)

    async def fetch_val(
        self, query: Query, values: Mapping[str, Any] | None = None, column: Any = 0
    ) -> Any:
        """Run a query and return one column (by index, name or Column) of its first row."""
        connection = self._held()
        if connection is not None:
            return await connection.fetch_val(query, values, column)
        backend = self._require_backend("fetch_val")
        raw = backend.acquire_nowait() or await backend.acquire()
        try:
            return await raw.fetch_val(query, values, column)
        finally:
            backend.release(raw)

    async def execute(self, query: Query, values: Mapping[str, Any] | None = None) -> Any:
        """Run a statement.

        Returns:
            For an insert, the new row's primary key; for an update or delete, the number of
            rows changed; for a statement with RETURNING, the first returned value.
        """
        connection = self._held()
        if connection is not None:
            return await connection.execute(query, values)
        return await self._require_backend("execute").execute_detached(query, values)

    async def execute_many(self, query: Query, values: Sequence[Mapping[str, Any]]) -> None:
        """Run a statement once per item of ``values``: one batched call, all or nothing."""
        self._require_backend("execute_many")
        await self.connection().execute_many(query, values)

    async def iterate(
        self, query: Query, values: Mapping[str, Any] | None = None
    ) -> AsyncGenerator[Record, None]:
        """Yield the rows of a query, fetched in batches; other queries may run in the loop."""
        self._require_backend("iterate")
        async for record in self.connection().iterate(query, values):
            yield record

    def __repr__(self) -> str:
        state = "connected" if self.is_connected else "disconnected"
        return f"<Database {self.url!r} {state}>"
