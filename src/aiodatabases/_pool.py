"""A small connection pool, fair within a bound, for drivers that have none (SQLite, MySQL)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from math import inf
from typing import Generic, TypeVar

from .exceptions import NotConnectedError, PoolTimeoutError

__all__ = ["Pool"]

C = TypeVar("C")
logger = logging.getLogger("aiodatabases.pool")

# How long the longest waiter may have waited for a released connection to go to a running
# task instead (see Pool); past it, connections go to waiters in order of arrival. Under a
# load of short statements a queue of waiters is served in a few milliseconds; the window
# must be longer than that for a running task ever to keep its connection.
BARGE_WINDOW = 0.02

_Waiter = tuple["asyncio.Future[C | None]", float, float | None, float]


class Pool(Generic[C]):
    """Hands out at most ``max_size`` connections; no waiter waits much longer than its turn.

    ``release()`` never waits, so cleanup code in ``finally`` blocks cannot be interrupted by
    cancellation. While the longest waiter has waited less than ``BARGE_WINDOW``, a released
    connection goes back to the idle list, and waiters get it at the event loop's next turn
    unless a running task (typically the one that released it, going on to its next query)
    takes it first. That saves a task switch per call on a busy pool: the task that had the
    connection runs its next statement at once instead of sleeping while a waiter wakes up.
    Once the longest waiter has waited longer, connections go straight to waiters, first come
    first served, so no task starves (as in Go's ``sync.Mutex``). Not thread-safe; use from
    one event loop.

    Waits are timed by one timer for the whole pool, armed at the earliest deadline of the
    waiters and moved on when it fires, rather than a timeout context per wait: on a busy
    pool nearly every call waits, and a context costs two coroutine frames, a timer and a
    cancellation check each time.
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
        # Waiters in arrival order: (future, deadline, timeout, since); a deadline of inf
        # never ends.
        self._waiters: deque[_Waiter[C]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._dispatching = False
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
        # Connections sit idle while tasks wait only from a release that let running tasks
        # take them (and scheduled _dispatch) until that dispatch.
        if self._idle and not self._closed and (not self._waiters or self._dispatching):
            return self._idle.pop()
        return None

    def _may_barge(self) -> bool:
        """Whether the longest waiter has waited less than ``BARGE_WINDOW``."""
        waiters = self._waiters
        while waiters and waiters[0][0].done():
            waiters.popleft()  # cancelled: nothing can be handed to it any more
        if not waiters:
            return True
        return time.monotonic() - waiters[0][3] < BARGE_WINDOW

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
        if self._idle and (not self._waiters or self._dispatching):
            return self._idle.pop()
        if self._size < self.max_size:
            return await self._grow()
        timeout = self.timeout if timeout is None else timeout
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[C | None] = loop.create_future()
        deadline = inf if timeout is None else loop.time() + timeout
        entry = (waiter, deadline, timeout, time.monotonic())
        self._waiters.append(entry)
        timer = self._timer
        if deadline != inf and (timer is None or deadline < timer.when()):
            if timer is not None:
                timer.cancel()  # a shorter timeout than the waiters' before
            self._timer = loop.call_at(deadline, self._expire)
        try:
            conn = await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                # A connection or a slot was handed over just as we were cancelled: pass it on.
                handed = waiter.result()
                if handed is None:
                    self._give_up_slot()
                else:
                    self._handoff(handed)
            elif waiter.cancelled() and entry in self._waiters:
                # A waiter that was handed something, or timed out, is off the queue already.
                self._waiters.remove(entry)
            raise
        if conn is None:
            # A discarded connection's slot was handed to us: fill it.
            return await self._fill_slot()
        return conn

    def _expire(self) -> None:
        """Fail the waiters whose deadline has passed; re-arm for the earliest left."""
        self._timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        earliest = inf
        kept: deque[_Waiter[C]] = deque()
        for entry in self._waiters:
            waiter, deadline, timeout, _ = entry
            if waiter.done():
                continue
            if deadline <= now:
                waiter.set_exception(
                    PoolTimeoutError(
                        f"no connection became free within {timeout} s "
                        f"(all {self.max_size} in use); raise max_size or pool_timeout"
                    )
                )
            else:
                kept.append(entry)
                earliest = min(earliest, deadline)
        self._waiters = kept
        if earliest != inf and not self._closed:
            self._timer = loop.call_at(earliest, self._expire)

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
            waiter = self._waiters.popleft()[0]
            if not waiter.done():
                waiter.set_result(None)
                return True
        return False

    def release(self, conn: C) -> None:
        """Give a healthy connection back."""
        if self._closed:
            self.discard(conn)
        elif self._waiters:
            self._handoff(conn)
        else:
            self._idle.append(conn)

    def _handoff(self, conn: C) -> None:
        if self._waiters and self._may_barge():
            self._idle.append(conn)
            if not self._dispatching:
                self._dispatching = True
                asyncio.get_running_loop().call_soon(self._dispatch)
            return
        self._give(conn)

    def _give(self, conn: C) -> bool:
        """Hand ``conn`` to the longest waiter, or put it with the idle ones if none waits."""
        while self._waiters:
            waiter = self._waiters.popleft()[0]
            if not waiter.done():
                waiter.set_result(conn)
                return True
        self._idle.append(conn)
        return False

    def _dispatch(self) -> None:
        """Hand the idle connections that no running task took to the waiters."""
        self._dispatching = False
        while self._idle and self._waiters and not self._closed:
            if not self._give(self._idle.pop()):
                break

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
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._waiters:
            waiter = self._waiters.popleft()[0]
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
