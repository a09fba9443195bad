"""The generic pool (SQLite, MySQL): waiting, timeouts, and who gets a released connection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from itertools import count

import pytest

from aiodatabases import PoolTimeoutError
from aiodatabases import _pool as pool_module
from aiodatabases._pool import Pool


@pytest.fixture
async def pool() -> AsyncIterator[Pool[int]]:
    """An open pool of at most one connection (numbered from 1), waits of up to 5 s."""
    numbers = count(1)

    async def create() -> int:
        return next(numbers)

    async def close(conn: int) -> None:
        pass

    opened: Pool[int] = Pool(create, close, min_size=1, max_size=1, timeout=5.0)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


@pytest.mark.timeout(10)
async def test_a_shorter_timeout_fails_on_time_while_an_earlier_longer_wait_goes_on(
    pool: Pool[int],
) -> None:
    """A waiter with a 0.1 s timeout that queued behind one with 5 s fails after about 0.1 s;
    the first waiter is still served when the connection comes back."""
    conn = await pool.acquire()
    long_wait = asyncio.ensure_future(pool.acquire())
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(PoolTimeoutError, match=r"within 0\.1 s"):
        await pool.acquire(timeout=0.1)
    assert loop.time() - started < 1.0
    assert not long_wait.done()
    pool.release(conn)
    assert await asyncio.wait_for(long_wait, 1.0) == conn


@pytest.mark.timeout(10)
async def test_waiters_time_out_in_turn_and_the_pool_serves_later_ones(pool: Pool[int]) -> None:
    """Three waiters with timeouts of 0.05, 0.1 and 0.15 s all fail; a later waiter gets the
    connection when it is released."""
    conn = await pool.acquire()
    waits = [asyncio.ensure_future(pool.acquire(timeout=t)) for t in (0.05, 0.1, 0.15)]
    done, _ = await asyncio.wait(waits)
    assert all(isinstance(w.exception(), PoolTimeoutError) for w in done)
    later = asyncio.ensure_future(pool.acquire())
    await asyncio.sleep(0)
    pool.release(conn)
    assert await asyncio.wait_for(later, 1.0) == conn
    assert pool.idle == 0


@pytest.mark.timeout(10)
async def test_a_running_task_takes_back_its_connection_while_the_waiter_is_young(
    pool: Pool[int],
) -> None:
    """A task that releases its connection and asks again at once gets it back while the
    longest waiter has waited less than BARGE_WINDOW; the waiter gets it at its next release."""
    conn = await pool.acquire()
    waiter = asyncio.ensure_future(pool.acquire())
    await asyncio.sleep(0)
    pool.release(conn)
    assert pool.acquire_nowait() == conn
    await asyncio.sleep(0)
    assert not waiter.done()
    pool.release(conn)
    assert await asyncio.wait_for(waiter, 1.0) == conn


@pytest.mark.timeout(10)
async def test_a_waiter_past_the_barge_window_gets_the_next_released_connection(
    pool: Pool[int],
) -> None:
    """Once the longest waiter has waited longer than BARGE_WINDOW, a released connection
    goes to it: a task asking again at once gets nothing and must wait its turn."""
    conn = await pool.acquire()
    waiter = asyncio.ensure_future(pool.acquire())
    await asyncio.sleep(pool_module.BARGE_WINDOW * 2)
    pool.release(conn)
    assert pool.acquire_nowait() is None
    assert await asyncio.wait_for(waiter, 1.0) == conn


@pytest.mark.timeout(10)
async def test_a_released_connection_nobody_takes_back_reaches_the_waiter(
    pool: Pool[int],
) -> None:
    """Released while a young waiter waits and not taken by a running task, the connection
    is handed to the waiter at the event loop's next turn."""
    conn = await pool.acquire()
    waiter = asyncio.ensure_future(pool.acquire())
    await asyncio.sleep(0)
    pool.release(conn)
    assert await asyncio.wait_for(waiter, 1.0) == conn
    assert pool.idle == 0


@pytest.mark.timeout(10)
async def test_cancelled_waiter_leaves_the_queue_and_the_connection_goes_idle(
    pool: Pool[int],
) -> None:
    """A waiter cancelled while waiting is forgotten: the released connection goes back to the
    idle list, and the next acquire_nowait() gets it."""
    conn = await pool.acquire()
    waiter = asyncio.ensure_future(pool.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    pool.release(conn)
    await asyncio.sleep(0)
    assert pool.idle == 1
    assert pool.acquire_nowait() == conn


@pytest.mark.timeout(10)
async def test_waiters_older_than_the_barge_window_are_served_in_arrival_order(
    pool: Pool[int],
) -> None:
    """Three waiters that have all waited past BARGE_WINDOW get the connection one after the
    other, first come first served."""
    conn = await pool.acquire()
    served: list[int] = []

    async def wait_then_release(number: int) -> None:
        got = await pool.acquire()
        served.append(number)
        pool.release(got)

    waiters = []
    for number in range(3):
        waiters.append(asyncio.ensure_future(wait_then_release(number)))
        await asyncio.sleep(0)
    await asyncio.sleep(pool_module.BARGE_WINDOW * 2)
    pool.release(conn)
    await asyncio.wait_for(asyncio.gather(*waiters), 1.0)
    assert served == [0, 1, 2]
