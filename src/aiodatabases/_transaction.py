"""Transaction: one transaction or savepoint on a connection."""

from __future__ import annotations

import asyncio
import enum
import functools
from collections.abc import Awaitable, Callable, Coroutine, Generator
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from .backends.base import TransactionOptions
from .exceptions import ConfigurationError, TransactionStateError

if TYPE_CHECKING:
    from ._connection import Connection

__all__ = ["Transaction", "TransactionState"]

P = ParamSpec("P")
R = TypeVar("R")

_OPTION_NAMES = {"isolation", "readonly", "deferrable", "mode"}
_ISOLATION_LEVELS = {"serializable", "repeatable_read", "read_committed", "read_uncommitted"}


class TransactionState(enum.Enum):
    """Where a transaction is in its life."""

    NEW = "not started"
    ACTIVE = "active"
    COMMITTED = "committed"
    ROLLED_BACK = "rolled back"


class Transaction:
    """A transaction, or a savepoint when another transaction is open on the connection.

    Use it as ``async with database.transaction():``, as a decorator
    (``@database.transaction()``; every call runs in a transaction of its own), or by hand
    (``tx = await database.transaction()`` then ``await tx.commit()`` or ``await
    tx.rollback()``). A transaction belongs to the task that started it: only that task may
    end it, and transactions end in the reverse order of their start. Not to be shared
    between tasks, except that child tasks started inside it run their queries in it.
    """

    def __init__(
        self,
        connection_callable: Callable[[], Connection],
        force_rollback: bool = False,
        **options: Any,
    ) -> None:
        unknown = set(options) - _OPTION_NAMES
        if unknown:
            raise ConfigurationError(
                f"unknown transaction option(s): {', '.join(sorted(unknown))}; "
                f"expected {', '.join(sorted(_OPTION_NAMES))}"
            )
        isolation = options.get("isolation")
        if isolation is not None:
            normal = str(isolation).lower().replace(" ", "_")
            if normal not in _ISOLATION_LEVELS:
                raise ConfigurationError(
                    f"unknown isolation level {isolation!r}; use one of "
                    f"{', '.join(sorted(_ISOLATION_LEVELS))}"
                )
            isolation = normal
        self._options_kwargs = options
        self._options = TransactionOptions(
            isolation=isolation,
            readonly=bool(options.get("readonly", False)),
            deferrable=options.get("deferrable"),
            mode=options.get("mode"),
        )
        self._connection_callable = connection_callable
        self._force_rollback = force_rollback
        self._state = TransactionState.NEW
        self._connection: Connection | None = None
        self._savepoint: str | None = None
        self._owner: asyncio.Task[Any] | None = None
        self._is_root = False
        self._token: Any = None
        self._outer: Transaction | None = None

    @property
    def state(self) -> TransactionState:
        """The transaction's state."""
        return self._state

    @property
    def connection(self) -> Connection | None:
        """The connection the transaction runs on, once started."""
        return self._connection

    async def __aenter__(self) -> Transaction:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._state is not TransactionState.ACTIVE:
            return  # ended by hand inside the block
        if exc_type is not None or self._force_rollback:
            await self.rollback()
        else:
            await self.commit()

    def __await__(self) -> Generator[Any, None, Transaction]:
        return self.start().__await__()

    def __call__(self, func: Callable[P, Awaitable[R]]) -> Callable[P, Coroutine[Any, Any, R]]:
        """Wrap ``func`` so that every call runs in a transaction of its own."""

        @functools.wraps(func)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            transaction = Transaction(
                self._connection_callable, self._force_rollback, **self._options_kwargs
            )
            async with transaction:
                return await func(*args, **kwargs)

        return wrapper

    async def start(self) -> Transaction:
        """Begin the transaction (or savepoint).

        Raises:
            TransactionStateError: It was started before.
        """
        if self._state is not TransactionState.NEW:
            raise TransactionStateError(
                f"cannot start(): the transaction is already {self._state.value}; "
                "create a new one with database.transaction()"
            )
        connection = self._connection_callable()
        self._owner = asyncio.current_task()
        await connection._start_transaction(self)
        return self

    def _check_end(self, method: str) -> Connection:
        if self._state is not TransactionState.ACTIVE:
            raise TransactionStateError(
                f"cannot {method}(): the transaction is {self._state.value}"
                + ("; start it first" if self._state is TransactionState.NEW else "")
            )
        if not self._is_root and self._owner is not asyncio.current_task():
            raise TransactionStateError(
                f"cannot {method}(): the transaction belongs to the task that started it "
                f"({_task_name(self._owner)}), not to {_task_name(asyncio.current_task())}; "
                "end it in its own task (for test isolation across tasks use "
                "Database(..., force_rollback=True))"
            )
        assert self._connection is not None
        return self._connection

    async def commit(self) -> None:
        """Commit the transaction, or release the savepoint.

        If the commit fails, the transaction is rolled back and the error raised.

        Raises:
            TransactionStateError: It is not active, belongs to another task, or a
                transaction started inside it is still open.
        """
        connection = self._check_end("commit")
        await connection._end_transaction(self, commit=True)

    async def rollback(self) -> None:
        """Roll back the transaction, or roll back to the savepoint.

        Raises:
            TransactionStateError: It is not active, belongs to another task, or a
                transaction started inside it is still open.
        """
        connection = self._check_end("rollback")
        await connection._end_transaction(self, commit=False)


def _task_name(task: asyncio.Task[Any] | None) -> str:
    return "no task" if task is None else f"task {task.get_name()!r}"
