"""A small, fair connection pool for drivers that have none (SQLite)."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from .exceptions import NotConnectedError, PoolTimeoutError

__all__ = ["Pool"]

C = TypeVar("C")
logger = logging.getLogger("aiodatabases.pool")


class Pool(Generic[C]):
    """Hands out at most ``max_size`` connections, first come first served.

    ``release()`` never waits: a connection goes straight to the longest-waiting acquirer or
    back to the idle list, so cleanup code in ``finally`` blocks cannot be interrupted by
    cancellation. Not thread-safe; use from one event loop.
    """

    def __init__(
        self,
        create: Callable[[], Awaitable[C]],
        close: Callable[[C], Awaitable[None]],
        *,
        min_size: int,
        max_size: int,
        timeout: float | None,
    ) -> None:
        self._create = create
        self._close = close
        self.min_size = min_size
        self.max_size = max_size
        self.timeout = timeout
        self._idle: deque[C] = deque()
        self._waiters: deque[asyncio.Future[C | None]] = deque()
        self._size = 0
        self._closed = True  # until open()
        self._closing_tasks: set[asyncio.Task[None]] = set()

    @property
    def size(self) -> int:
        """Connections open now, idle or in use."""
        return self._size

    @property
    def idle(self) -> int:
        """Connections open and waiting in the pool."""
        return len(self._idle)

    @property
    def in_use(self) -> int:
        """Connections checked out of the pool."""
        return self._size - len(self._idle)

    async def open(self) -> None:
        """Open ``min_size`` connections."""
        self._closed = False
        while self._size < self.min_size:
            self._size += 1
            try:
                conn = await self._create()
            except BaseException:
                self._size -= 1
                raise
            self._idle.append(conn)

    def acquire_nowait(self) -> C | None:
        """Return an idle connection at once, or ``None`` when the caller has to wait."""
        if self._idle and not self._waiters and not self._closed:
            return self._idle.pop()
        return None

    async def acquire(self, timeout: float | None = None) -> C:  # noqa: ASYNC109  # a pool wait bound
        """Return a connection, opening one if the pool may grow, else waiting for one.

        Raises:
            PoolTimeoutError: No connection became free within the timeout.
            NotConnectedError: The pool is closed.
        """
        if self._closed:
            raise NotConnectedError(
                "cannot acquire a connection: the database is not connected; "
                "call `await database.connect()` first"
            )
        if self._idle and not self._waiters:
            return self._idle.pop()
        if self._size < self.max_size:
            return await self._grow()
        timeout = self.timeout if timeout is None else timeout
        waiter: asyncio.Future[C | None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(timeout):
                conn = await waiter
        except TimeoutError:
            raise PoolTimeoutError(
                f"no connection became free within {timeout} s "
                f"(all {self.max_size} in use); raise max_size or pool_timeout"
            ) from None
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                # A connection or a slot was handed over just as we were cancelled: pass it on.
                handed = waiter.result()
                if handed is None:
                    self._give_up_slot()
                else:
                    self._handoff(handed)
            raise
        finally:
            # A waiter that was handed something was taken off the queue by the hand-over;
            # only a cancelled (or timed out) one is still in it. (A failed remove() would
            # format the future's repr for its error message: costly on a busy pool.)
            if waiter.cancelled() or not waiter.done():
                try:
                    self._waiters.remove(waiter)
                except ValueError:
                    pass
        if conn is None:
            # A discarded connection's slot was handed to us: fill it.
            return await self._fill_slot()
        return conn

    async def _grow(self) -> C:
        self._size += 1
        return await self._fill_slot()

    async def _fill_slot(self) -> C:
        # The slot is already counted in _size; on failure it passes to a waiter or is freed.
        try:
            return await self._create()
        except BaseException:
            self._give_up_slot()
            raise

    def _give_up_slot(self) -> None:
        if self._closed or not self._handoff_slot():
            self._size -= 1

    def _handoff_slot(self) -> bool:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return True
        return False

    def release(self, conn: C) -> None:
        """Give a healthy connection back."""
        if self._closed:
            self.discard(conn)
            return
        self._handoff(conn)

    def _handoff(self, conn: C) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        self._idle.append(conn)

    def discard(self, conn: C) -> None:
        """Close a connection whose state is unknown instead of reusing it."""
        task = asyncio.get_running_loop().create_task(self._close_quietly(conn))
        self._closing_tasks.add(task)
        task.add_done_callback(self._closing_tasks.discard)
        self._give_up_slot()

    async def _close_quietly(self, conn: C) -> None:
        try:
            await self._close(conn)
        except Exception:
            logger.warning("closing a discarded connection failed", exc_info=True)

    async def close(self) -> None:
        """Close idle connections now; connections in use close when released."""
        self._closed = True
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(
                    NotConnectedError("cannot acquire(): the database was disconnected")
                )
        while self._idle:
            conn = self._idle.pop()
            self._size -= 1
            await self._close_quietly(conn)
        if self._closing_tasks:
            await asyncio.gather(*self._closing_tasks, return_exceptions=True)
