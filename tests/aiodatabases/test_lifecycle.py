"""Database lifecycle: connect, disconnect, async with, is_connected, options and the pool."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import aiodatabases
from aiodatabases import Database

from .helpers import hold_connections, with_query


async def test_connect_sets_is_connected_and_disconnect_clears_it(database_url: str) -> None:
    """is_connected is False before connect(), True after, and False after disconnect()."""
    database = Database(database_url)
    states = [database.is_connected]
    await database.connect()
    try:
        states.append(database.is_connected)
        assert await database.fetch_val("SELECT 1") == 1
    finally:
        await database.disconnect()
    states.append(database.is_connected)
    assert states == [False, True, False]


async def test_connect_twice_is_harmless(database_url: str) -> None:
    """A second connect() is a no-op: no error, and queries still work."""
    database = Database(database_url)
    await database.connect()
    try:
        await database.connect()
        assert database.is_connected is True
        assert await database.fetch_val("SELECT 2") == 2
    finally:
        await database.disconnect()


async def test_disconnect_twice_is_harmless(database_url: str) -> None:
    """A second disconnect(), and a disconnect() before any connect(), raise nothing."""
    database = Database(database_url)
    await database.disconnect()
    await database.connect()
    await database.disconnect()
    await database.disconnect()
    assert database.is_connected is False


async def test_database_can_reconnect_after_disconnect(database_url: str) -> None:
    """connect() after disconnect() gives a working database again."""
    database = Database(database_url)
    await database.connect()
    await database.disconnect()
    await database.connect()
    try:
        assert await database.fetch_val("SELECT 3") == 3
    finally:
        await database.disconnect()


async def test_async_with_connects_and_disconnects(database_url: str) -> None:
    """async with Database(url) as db yields the connected database and disconnects on exit."""
    database = Database(database_url)
    async with database as db:
        assert db is database
        assert db.is_connected is True
        assert await db.fetch_val("SELECT 4") == 4
    assert database.is_connected is False


async def test_async_with_disconnects_when_the_body_raises(database_url: str) -> None:
    """An exception in the async with body propagates and the database is disconnected."""
    database = Database(database_url)
    with pytest.raises(LookupError):
        async with database:
            raise LookupError("boom")
    assert database.is_connected is False


@pytest.mark.parametrize(
    "method", ["fetch_all", "fetch_one", "fetch_val", "execute", "execute_many", "iterate"]
)
async def test_query_before_connect_raises_not_connected_error(
    database_url: str, method: str
) -> None:
    """Every query method called before connect() raises NotConnectedError, an InterfaceError."""
    database = Database(database_url)

    async def call() -> None:
        if method == "iterate":
            async for _ in database.iterate("SELECT 1"):
                pass
        elif method == "execute_many":
            await database.execute_many("SELECT :x", [{"x": 1}])
        else:
            await getattr(database, method)("SELECT 1")

    with pytest.raises(aiodatabases.NotConnectedError) as info:
        await call()
    assert isinstance(info.value, aiodatabases.InterfaceError)


async def test_query_after_disconnect_raises_not_connected_error(database_url: str) -> None:
    """A query on a disconnected database raises NotConnectedError."""
    database = Database(database_url)
    await database.connect()
    await database.disconnect()
    with pytest.raises(aiodatabases.NotConnectedError):
        await database.fetch_all("SELECT 1")


async def _build_and_connect(url: str, **options: Any) -> None:
    """Build a Database and connect it (the error may come from either step); then disconnect."""
    database = Database(url, **options)
    await database.connect()
    await database.disconnect()


async def test_unknown_keyword_option_raises_configuration_error(database_url: str) -> None:
    """An option nobody knows raises ConfigurationError naming it, not a driver TypeError."""
    with pytest.raises(aiodatabases.ConfigurationError, match="no_such_option"):
        await _build_and_connect(database_url, no_such_option=1)


async def test_non_numeric_max_size_in_url_raises_configuration_error(sqlite_url: str) -> None:
    """?max_size=lots is a configuration error, not a ValueError from int()."""
    with pytest.raises(aiodatabases.ConfigurationError, match="max_size"):
        await _build_and_connect(with_query(sqlite_url, max_size="lots"))


@pytest.mark.timeout(30)
async def test_max_size_in_url_limits_the_pool(database_url: str) -> None:
    """?min_size=1&max_size=2 lets two tasks hold connections at once; a third times out."""
    url = with_query(database_url, min_size=1, max_size=2)
    async with Database(url, pool_timeout=0.3) as database:
        assert len(await hold_connections(database, 2)) == 2
        with pytest.raises(aiodatabases.PoolTimeoutError):
            await hold_connections(database, 3)


@pytest.mark.timeout(30)
async def test_max_size_keyword_overrides_the_url(database_url: str) -> None:
    """max_size=3 as a keyword wins over ?max_size=1 in the URL."""
    url = with_query(database_url, max_size=1)
    async with Database(url, max_size=3, pool_timeout=5) as database:
        assert len(await hold_connections(database, 3)) == 3


@pytest.mark.timeout(30)
async def test_min_size_and_max_size_keywords_are_accepted(database_url: str) -> None:
    """min_size and max_size keywords configure a working pool of that size."""
    async with Database(database_url, min_size=1, max_size=2, pool_timeout=0.3) as database:
        assert len(await hold_connections(database, 2)) == 2
        with pytest.raises(aiodatabases.PoolTimeoutError):
            await hold_connections(database, 3)


@pytest.mark.timeout(30)
async def test_pool_timeout_raises_pool_timeout_error_that_is_a_timeout_error(
    database_url: str,
) -> None:
    """With the only connection held, another task gets PoolTimeoutError after pool_timeout."""
    async with Database(database_url, max_size=1, pool_timeout=0.2) as database:
        held = asyncio.Event()
        release = asyncio.Event()

        async def holder() -> None:
            async with database.connection() as connection:
                await connection.fetch_val("SELECT 1")
                held.set()
                await release.wait()

        task = asyncio.create_task(holder())
        await held.wait()
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(aiodatabases.PoolTimeoutError) as info:
            await asyncio.create_task(database.fetch_val("SELECT 1"))
        waited = loop.time() - started
        release.set()
        await task
        assert isinstance(info.value, TimeoutError)
        assert isinstance(info.value, aiodatabases.OperationalError)
        assert waited >= 0.15
        assert await database.fetch_val("SELECT 5") == 5


@pytest.mark.timeout(30)
async def test_pooled_connection_is_reused_between_blocks(database_url: str) -> None:
    """With max_size=1, sequential connection() blocks get the same driver connection."""
    async with Database(database_url, max_size=1) as database:
        async with database.connection() as first:
            await first.fetch_val("SELECT 1")
            first_raw = first.raw_connection
        async with database.connection() as second:
            await second.fetch_val("SELECT 1")
            second_raw = second.raw_connection
        assert first_raw is second_raw


@pytest.mark.timeout(30)
async def test_pool_is_usable_after_many_sequential_queries(database_url: str) -> None:
    """Hundreds of plain queries on max_size=1 neither leak connections nor exhaust the pool."""
    async with Database(database_url, max_size=1, pool_timeout=2) as database:
        for number in range(300):
            assert await database.fetch_val("SELECT :n", {"n": number}) == number


async def test_connection_and_transaction_before_connect_raise_not_connected(
    sqlite_url: str,
) -> None:
    """Holding a connection or starting a transaction before connect() is a clear error."""
    database = Database(sqlite_url)
    with pytest.raises(aiodatabases.NotConnectedError, match="connect"):
        async with database.connection():
            pass
    with pytest.raises(aiodatabases.NotConnectedError, match="connect"):
        await database.transaction()
    assert not database.is_connected
