"""Contender: psycopg 3 with ``psycopg_pool.AsyncConnectionPool``.

The pool has ``max_size=10`` (``min_size=1``) and hands out connections in autocommit mode,
so a statement is one round trip as for every other contender; each call takes a connection
with ``async with pool.connection() as conn:`` and runs ``await conn.execute(sql, params)``
(psycopg prepares a statement server-side after it has run 5 times, its default). (d) runs
``cursor.executemany`` (pipelined by psycopg) inside ``conn.transaction()``, so a batch is
atomic as asyncpg's is; (e) has 64 tasks share the pool. Rows are tuples read by index, in
psycopg's default text format.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from psycopg_pool import AsyncConnectionPool

from ..common import COLUMNS, INSERT_COLUMNS, Bench, Inputs, RowData, read_sink, split

SELECT_ONE = f"SELECT {COLUMNS} FROM items WHERE id = %s"
SELECT_MANY = f"SELECT {COLUMNS} FROM items WHERE id <= %s"
INSERT_EVENT = f"INSERT INTO events ({INSERT_COLUMNS}) VALUES (%s, %s, %s, %s)"
INSERT_BULK = f"INSERT INTO bulk ({INSERT_COLUMNS}) VALUES (%s, %s, %s, %s)"
POOL_SIZE = 10


async def run(bench: Bench, target: dict[str, Any]) -> None:
    """Run every workload against the prepared database."""
    inputs = Inputs.build(bench.sizes)
    sizes = bench.sizes
    fetch_rows = sizes.fetch_rows
    tasks = sizes.concurrent_tasks
    conninfo = (
        f"host={target['host']} port={target['port']} user={target['user']} "
        f"dbname={target['database']}"
    )
    pool = AsyncConnectionPool(
        conninfo, min_size=1, max_size=POOL_SIZE, kwargs={"autocommit": True}, open=False
    )
    await pool.open(wait=True)
    bench.info["pool"] = f"min_size=1, max_size={POOL_SIZE}, autocommit"

    async def point(ids: Sequence[int]) -> None:
        for i in ids:
            async with pool.connection() as conn:
                await (await conn.execute(SELECT_ONE, (i,))).fetchone()

    async def fetch(reps: Sequence[int]) -> None:
        last: object = None
        for _ in reps:
            async with pool.connection() as conn:
                rows = await (await conn.execute(SELECT_MANY, (fetch_rows,))).fetchall()
            for r in rows:
                last = (r[0], r[1], r[2], r[3], r[4])
        read_sink(last)

    async def insert(rows: Sequence[tuple[Any, ...]]) -> None:
        for params in rows:
            async with pool.connection() as conn:
                await conn.execute(INSERT_EVENT, params)

    batch = [r.typed_tuple() for r in inputs.many_rows]

    async def many(reps: Sequence[int]) -> None:
        for _ in reps:
            async with pool.connection() as conn, conn.transaction():
                await conn.cursor().executemany(INSERT_BULK, batch)

    async def concurrent(ids: Sequence[int]) -> None:
        await asyncio.gather(*(point(part) for part in split(ids, tasks)))

    try:
        await bench.measure_workloads(
            inputs,
            point=point,
            fetch=fetch,
            insert=insert,
            insert_values=RowData.typed_tuple,
            many=many,
            concurrent=concurrent,
        )
    finally:
        await pool.close()
