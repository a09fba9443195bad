"""Small helpers shared by the aiodatabases tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import TracebackType

import pytest
from sqlalchemy import Table, func, select

import aiodatabases
from aiodatabases import Database

#: (url, seconds) -> raw SQL that keeps that backend busy for about that long.
SlowSql = Callable[[str, float], str]


class Abort(Exception):
    """Raised by a test to leave a transaction block with an error."""


class expect_abort:  # lower case: it reads like a function, `with expect_abort():`
    """Require the with block to end by raising Abort, and swallow it.

    Unlike pytest.raises, it reads well around a whole transaction block, and its __exit__
    returns bool so type checkers know the code after the block is reachable.
    """

    def __enter__(self) -> None:
        """Enter the block."""

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        """Swallow Abort; fail the test when the block ended without it."""
        if exc_type is None:
            pytest.fail("Abort was raised inside the block but did not propagate out of it")
        return issubclass(exc_type, Abort)


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


def with_query(url: str, **params: object) -> str:
    """Return url with params appended to its query string."""
    query = "&".join(f"{name}={value}" for name, value in params.items())
    return f"{url}{'&' if '?' in url else '?'}{query}"


async def assert_a_conflict_in_a_group_fails_alone(
    db: Database, users: Table, groups: list[int], driver_error: type[BaseException]
) -> None:
    """Ten concurrent inserts into ``users``, the sixth of a name already taken: a group forms,
    that caller alone gets the IntegrityError (also the driver's ``driver_error``), the others
    their row ids, and exactly their rows are stored."""
    await db.execute(users.insert(), {"name": "taken"})
    names = [f"user {i}" for i in range(10)]
    names[5] = "taken"
    results = await asyncio.gather(
        *(db.execute(users.insert(), {"name": name}) for name in names),
        return_exceptions=True,
    )
    assert max(groups, default=0) > 1
    error = results[5]
    assert isinstance(error, aiodatabases.IntegrityError)
    assert isinstance(error, driver_error)
    assert all(isinstance(result, int) for i, result in enumerate(results) if i != 5)
    stored = {row["name"] for row in await db.fetch_all(select(users.c.name))}
    assert stored == {"taken", *(name for i, name in enumerate(names) if i != 5)}
