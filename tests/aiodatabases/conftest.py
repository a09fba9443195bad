"""Fixtures of the aiodatabases tests: a connected database with fresh tables."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.schema import CreateTable, DropTable

import aiodatabases

from .mariadb_server import private_mariadb_server as private_mariadb_server
from .tables import ALL_TABLES


async def drop_tables(database: aiodatabases.Database) -> None:
    """Drop every test table that exists, children first."""
    for table in reversed(ALL_TABLES):
        await database.execute(DropTable(table, if_exists=True))


async def create_tables(database: aiodatabases.Database) -> None:
    """Drop then create every test table, so each test starts from empty tables."""
    await drop_tables(database)
    for table in ALL_TABLES:
        await database.execute(CreateTable(table))


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[aiodatabases.Database]:
    """A connected Database on each backend, with every test table freshly created."""
    db = aiodatabases.Database(database_url)
    await db.connect()
    await create_tables(db)
    try:
        yield db
    finally:
        if not db.is_connected:
            await db.connect()
        await drop_tables(db)
        await db.disconnect()


@pytest.fixture
async def sqlite_database(sqlite_url: str) -> AsyncIterator[aiodatabases.Database]:
    """A connected Database on a fresh SQLite file, with every test table created."""
    db = aiodatabases.Database(sqlite_url)
    await db.connect()
    await create_tables(db)
    try:
        yield db
    finally:
        await db.disconnect()
