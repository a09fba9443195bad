"""The abstract classes every backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from .._compiler import Compiler, Query
from .._records import Record
from .._url import DatabaseURL

__all__ = ["Backend", "BackendConnection", "BackendCursor", "PoolStats", "TransactionOptions"]

IsolationLevel = Literal["serializable", "repeatable_read", "read_committed", "read_uncommitted"]


@dataclass(frozen=True, slots=True)
class TransactionOptions:
    """What a transaction asks of the backend; unset fields take the server's default."""

    isolation: str | None = None
    readonly: bool = False
    deferrable: bool | None = None
    mode: str | None = None


@dataclass(frozen=True, slots=True)
class PoolStats:
    """A snapshot of a backend's pool."""

    size: int
    idle: int
    in_use: int
    max_size: int


class BackendCursor(Protocol):
    """Rows of one query, fetched a batch at a time."""

    async def fetch(self) -> list[Record]:
        """Return the next batch; an empty list when the rows are exhausted."""
        ...

    def close(self) -> None:
        """Finish the query; never waits."""
        ...


class BackendConnection(ABC):
    """One driver connection. Used by one task at a time; ``Connection`` guarantees that."""

    @property
    @abstractmethod
    def raw_connection(self) -> Any:
        """The native driver connection."""

    @property
    @abstractmethod
    def in_transaction(self) -> bool:
        """Whether the server has a transaction open on this connection."""

    @abstractmethod
    async def fetch_all(self, query: Query, values: Mapping[str, Any] | None) -> list[Record]:
        """Run a query and return all its rows."""

    @abstractmethod
    async def fetch_one(self, query: Query, values: Mapping[str, Any] | None) -> Record | None:
        """Run a query and return its first row, or ``None``."""

    @abstractmethod
    async def fetch_val(self, query: Query, values: Mapping[str, Any] | None, column: Any) -> Any:
        """Run a query and return one value of its first row, or ``None``."""

    @abstractmethod
    async def execute(self, query: Query, values: Mapping[str, Any] | None) -> Any:
        """Run a statement; return the new key of an insert or the count of changed rows."""

    @abstractmethod
    async def execute_many(self, query: Query, values: Sequence[Mapping[str, Any]]) -> None:
        """Run a statement once per set of values, as one batched driver call."""

    @abstractmethod
    async def cursor(self, query: Query, values: Mapping[str, Any] | None) -> BackendCursor:
        """Open a cursor that fetches the query's rows in bounded batches."""

    @abstractmethod
    async def begin(self, options: TransactionOptions) -> None:
        """Open a transaction."""

    @abstractmethod
    async def commit(self) -> None:
        """Commit the open transaction."""

    @abstractmethod
    async def rollback(self) -> None:
        """Roll back the open transaction."""

    @abstractmethod
    async def savepoint(self, name: str) -> None:
        """Open a savepoint inside the transaction."""

    @abstractmethod
    async def release_savepoint(self, name: str) -> None:
        """Keep the work of a savepoint."""

    @abstractmethod
    async def rollback_to_savepoint(self, name: str) -> None:
        """Undo the work of a savepoint and close it."""


class Backend(ABC):
    """A database reached through one driver: its pool, its compiler, its options."""

    compiler: Compiler
    url: DatabaseURL

    @abstractmethod
    async def connect(self) -> None:
        """Open the pool."""

    @abstractmethod
    async def disconnect(self) -> None:
        """Close the pool and every connection in it."""

    @abstractmethod
    def acquire_nowait(self) -> BackendConnection | None:
        """Return an idle connection without waiting, or ``None``."""

    @abstractmethod
    async def acquire(self) -> BackendConnection:
        """Return a connection from the pool, waiting up to the pool timeout."""

    @abstractmethod
    def release(self, connection: BackendConnection) -> None:
        """Give a connection back; never waits, so it is safe in ``finally`` under cancel."""

    @abstractmethod
    def pool_stats(self) -> PoolStats:
        """Return the pool's current counts."""

    async def execute_detached(self, query: Query, values: Mapping[str, Any] | None) -> Any:
        """Run one statement on a pooled connection held only for it (``Database.execute``
        when the task holds no connection); a backend may run it along with others."""
        connection = self.acquire_nowait() or await self.acquire()
        try:
            return await connection.execute(query, values)
        finally:
            self.release(connection)
