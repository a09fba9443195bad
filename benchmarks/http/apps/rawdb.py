"""The raw-driver store of the ceiling contenders: an asyncpg pool or one aiosqlite connection.

Rows are plain tuples ``(id, text, completed)``; SQL is written by hand.
"""

from __future__ import annotations

from typing import Any

SQL_GET = "SELECT id, text, completed FROM notes WHERE id = {}"
SQL_LIST = "SELECT id, text, completed FROM notes ORDER BY id LIMIT {}"
SQL_CREATE = "INSERT INTO notes (text, completed) VALUES ({}, {}) RETURNING id"


class AsyncpgStore:
    """Queries on an asyncpg pool of 10 connections."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool

    async def get_note(self, note_id: int) -> Any:
        return await self.pool.fetchrow(SQL_GET.format("$1"), note_id)

    async def list_notes(self, limit: int) -> Any:
        return await self.pool.fetch(SQL_LIST.format("$1"), limit)

    async def create_note(self, text: str, completed: bool) -> int:
        return int(await self.pool.fetchval(SQL_CREATE.format("$1", "$2"), text, completed))

    async def close(self) -> None:
        await self.pool.close()


class AiosqliteStore:
    """Queries on one aiosqlite connection shared by every request, in autocommit mode."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    async def get_note(self, note_id: int) -> Any:
        async with self.conn.execute(SQL_GET.format("?"), (note_id,)) as cursor:
            return await cursor.fetchone()

    async def list_notes(self, limit: int) -> Any:
        async with self.conn.execute(SQL_LIST.format("?"), (limit,)) as cursor:
            return await cursor.fetchall()

    async def create_note(self, text: str, completed: bool) -> int:
        async with self.conn.execute(SQL_CREATE.format("?", "?"), (text, completed)) as cursor:
            row = await cursor.fetchone()
        return int(row[0])

    async def close(self) -> None:
        await self.conn.close()


async def open_store(dsn: str) -> AsyncpgStore | AiosqliteStore:
    """Connect to ``dsn`` (``postgresql://...`` or ``sqlite:///<file>``)."""
    if dsn.startswith("postgresql://"):
        import asyncpg

        return AsyncpgStore(await asyncpg.create_pool(dsn, min_size=10, max_size=10))
    import aiosqlite

    conn = await aiosqlite.connect(dsn.removeprefix("sqlite:///"), isolation_level=None)
    await conn.execute("PRAGMA synchronous=normal")
    return AiosqliteStore(conn)
