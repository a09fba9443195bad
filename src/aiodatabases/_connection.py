"""Connection: a task's handle on one pooled driver connection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from ._compiler import Query
from ._records import Record
from ._transaction import Transaction, TransactionState
from .backends.base import Backend, BackendConnection
from .exceptions import InterfaceError, TransactionStateError

if TYPE_CHECKING:
    from ._database import Database

__all__ = ["Connection"]

T = TypeVar("T")


class Connection:
    """One driver connection taken from the pool for as long as it is held.

    ``async with connection:`` holds it (re-entrant, counted); the query methods hold it
    for the duration of the call when it is not held. Each task gets its own
    ``Connection`` from ``database.connection()``; tasks started inside a transaction share
    the transaction's connection, and their calls on it take turns, so it may be shared
    between tasks.
    """

    def __init__(self, database: Database, backend: Backend) -> None:
        self._database = database
        self._backend = backend
        self._raw: BackendConnection | None = None
        self._holds = 0
        self._lock = asyncio.Lock()
        self._transactions: list[Transaction] = []
        self._txn_waiters: list[asyncio.Future[None]] = []
        self._savepoints = 0

    # -- holding ----------------------------------------------------------------------------

    async def __aenter__(self) -> Connection:
        if self._raw is not None:
            self._holds += 1
            return self
        self._holds += 1
        try:
            async with self._lock:
                if self._raw is None:
                    raw = self._backend.acquire_nowait()
                    if raw is None:
                        raw = await self._backend.acquire()
                    self._raw = raw
        except BaseException:
            self._holds -= 1
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        self._unhold()

    def _unhold(self) -> None:
        self._holds -= 1
        if self._holds == 0 and self._raw is not None:
            raw, self._raw = self._raw, None
            self._backend.release(raw)

    @property
    def raw_connection(self) -> Any:
        """The native driver connection (``sqlite3.Connection``, ``asyncpg.Connection``...).

        Raises:
            InterfaceError: The connection is not held (use ``async with`` first).
        """
        if self._raw is None:
            raise InterfaceError(
                "cannot read raw_connection: the connection is not acquired; "
                "use it inside `async with database.connection() as connection:`"
            )
        return self._raw.raw_connection

    # -- queries ----------------------------------------------------------------------------

    async def _call(self, method: str, *args: Any) -> Any:
        # Hold for the whole call: a hold dropped meanwhile by another task (an abandoned
        # iterate() generator is finalised in a task of its own) must not release the
        # driver connection under a running statement.
        async with self, self._lock:
            raw = self._raw
            assert raw is not None
            result: Awaitable[Any] = getattr(raw, method)(*args)
            return await result

    async def fetch_all(
        self, query: Query, values: Mapping[str, Any] | None = None
    ) -> list[Record]:
        """Run a query and return all its rows."""
        result: list[Record] = await self._call("fetch_all", query, values)
        return result

    async def fetch_one(
        self, query: Query, values: Mapping[str, Any] | None = None
    ) -> Record | None:
        """Run a query and return its first row, or ``None``."""
        result: Record | None = await self._call("fetch_one", query, values)
        return result

    async def fetch_val(
        self, query: Query, values: Mapping[str, Any] | None = None, column: Any = 0
    ) -> Any:
        """Run a query and return one column (by index, name or Column) of its first row."""
        return await self._call("fetch_val", query, values, column)

    async def execute(self, query: Query, values: Mapping[str, Any] | None = None) -> Any:
        """Run a statement.

        Returns:
            For an insert, the new row's primary key; for an update or delete, the number of
            rows changed; for a statement with RETURNING, the first returned value.
        """
        return await self._call("execute", query, values)

    async def execute_many(self, query: Query, values: Sequence[Mapping[str, Any]]) -> None:
        """Run a statement once per item of ``values``: one batched call, all or nothing."""
        if isinstance(values, Mapping):
            raise InterfaceError("execute_many() takes a list of dicts, not a single dict")
        await self._call("execute_many", query, list(values))

    async def iterate(
        self, query: Query, values: Mapping[str, Any] | None = None
    ) -> AsyncGenerator[Record, None]:
        """Yield the rows of a query, fetched in batches.

        Other queries may run inside the loop: the connection is only busy while a batch is
        being fetched.
        """
        async with self:
            raw = self._raw
            assert raw is not None
            async with self._lock:
                cursor = await raw.cursor(query, values)
            try:
                while True:
                    async with self._lock:
                        batch = await cursor.fetch()
                    if not batch:
                        break
                    for record in batch:
                        yield record
            finally:
                cursor.close()

    # -- transactions ---------------------------------------------------------------------

    def transaction(self, *, force_rollback: bool = False, **options: Any) -> Transaction:
        """Return a transaction on this connection (a savepoint if one is open)."""
        return Transaction(lambda: self, force_rollback=force_rollback, **options)

    async def _start_transaction(self, transaction: Transaction) -> None:
        var = self._database._transaction_var
        visible = var.get()
        # On a shared connection, wait while a transaction of another (unrelated) task is on
        # top: starting ours inside it would tangle the two.
        while self._transactions:
            top = self._transactions[-1]
            if top is visible or top._is_root:
                break
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._txn_waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._txn_waiters:
                    self._txn_waiters.remove(waiter)
        await self.__aenter__()
        try:
            async with self._lock:
                raw = self._raw
                assert raw is not None
                if not self._transactions:
                    await raw.begin(transaction._options)
                else:
                    self._savepoints += 1
                    name = f"aiodatabases_sp_{self._savepoints}"
                    await raw.savepoint(name)
                    transaction._savepoint = name
        except BaseException:
            self._unhold()
            raise
        transaction._connection = self
        transaction._state = TransactionState.ACTIVE
        self._transactions.append(transaction)
        if not transaction._is_root:
            transaction._outer = visible
            transaction._token = var.set(transaction)

    async def _end_transaction(self, transaction: Transaction, commit: bool) -> None:
        if not self._transactions or self._transactions[-1] is not transaction:
            method = "commit" if commit else "rollback"
            raise TransactionStateError(
                f"cannot {method}(): a transaction started later inside this one is still "
                "open; end the inner transaction first"
            )
        raw = self._raw
        assert raw is not None
        try:
            if commit:
                try:
                    async with self._lock:
                        if transaction._savepoint is None:
                            await raw.commit()
                        else:
                            await raw.release_savepoint(transaction._savepoint)
                except BaseException:
                    await _complete(self._undo(raw, transaction))
                    raise
                transaction._state = TransactionState.COMMITTED
            else:
                await _complete(self._undo(raw, transaction))
        finally:
            if transaction._state is TransactionState.ACTIVE:
                transaction._state = TransactionState.ROLLED_BACK
            self._transactions.remove(transaction)
            self._forget(transaction)
            for waiter in self._txn_waiters:
                if not waiter.done():
                    waiter.set_result(None)
            self._unhold()

    async def _undo(self, raw: BackendConnection, transaction: Transaction) -> None:
        async with self._lock:
            if transaction._savepoint is None:
                await raw.rollback()
            else:
                await raw.rollback_to_savepoint(transaction._savepoint)
        transaction._state = TransactionState.ROLLED_BACK

    def _forget(self, transaction: Transaction) -> None:
        if transaction._is_root:
            return
        var = self._database._transaction_var
        try:
            var.reset(transaction._token)
        except ValueError:
            # Ended in another context than it started in: restore what it replaced.
            if var.get() is transaction:
                var.set(transaction._outer)


async def _complete(awaitable: Awaitable[T]) -> T:
    """Run cleanup to the end even if the calling task is cancelled meanwhile.

    A cancellation that arrives during the cleanup is re-raised once the cleanup is done (its
    own error, if any, is then chained as the context).
    """
    task = asyncio.ensure_future(awaitable)
    cancelled: asyncio.CancelledError | None = None
    while not task.done():
        try:
            await asyncio.wait([task])
        except asyncio.CancelledError as exc:
            cancelled = exc
    if cancelled is not None:
        if not task.cancelled() and task.exception() is not None:
            cancelled.__context__ = task.exception()
        raise cancelled
    return task.result()
