"""Small helpers shared by the aiodatabases tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import Table, func, select

from aiodatabases import Database

#: (url, seconds) -> raw SQL that keeps that backend busy for about that long.
SlowSql = Callable[[str, float], str]


class Abort(Exception):
    """Raised by a test to leave a transaction block with an error."""


@contextlib.contextmanager
def expect_abort() -> Iterator[None]:
    """Require the block to end by raising Abort, and swallow it."""
    try:
        yield
    except Abort:
        return
    pytest.fail("Abort was raised inside the block but did not propagate out of it")


async def hold_connections(database: Database, count: int) -> set[int]:
    """Check out count connections at once from separate tasks; return their raw ids.

    The first error (a PoolTimeoutError, say) releases the other holders and is re-raised.
    """
    ready = 0
    all_ready = asyncio.Event()
    ids: set[int] = set()

    async def hold() -> None:
        nonlocal ready
        try:
            async with database.connection() as connection:
                assert await connection.fetch_val("SELECT 1") == 1
                ids.add(id(connection.raw_connection))
                ready += 1
                if ready == count:
                    all_ready.set()
                await all_ready.wait()
        except BaseException:
            all_ready.set()
            raise

    results = await asyncio.gather(*(hold() for _ in range(count)), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return ids


async def count_rows(database: Database, table: Table) -> int:
    """Return the number of rows in table, as seen by the current task's connection."""
    value = await database.fetch_val(select(func.count()).select_from(table))
    assert isinstance(value, int)
    return value


async def count_from_outside(url: str, table: Table) -> int:
    """Return the number of committed rows in table, read through a separate Database."""
    async with Database(url) as other:
        return await count_rows(other, table)
