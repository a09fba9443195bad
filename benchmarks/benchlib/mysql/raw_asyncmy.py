"""Contender: raw ``asyncmy``, on one held connection (``mode=held``) or through its pool.

Connections are in autocommit mode (as aiodatabases's are), so an insert is one round trip.
Every statement runs on a cursor opened for it: ``async with conn.cursor() as cur: await
cur.execute(sql, params)`` then ``fetchone``/``fetchall``; (d) uses ``cur.executemany``, which
asyncmy sends as one multi-row ``INSERT`` (a single, atomic statement).

``held`` (the ceiling): one ``asyncmy.connect()`` for the whole run; it measures (a)-(d).
``pool``: ``asyncmy.create_pool(maxsize=10)``, and ``async with pool.acquire() as conn:``
around every statement; it measures (a)-(e), (e) with 64 tasks sharing the pool.

Rows are tuples read by index; the driver decodes every type itself (the boolean column
stays an ``int``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncmy

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
    pooled = bench.options.get("mode") == "pool"
    params = {
        "host": target["host"],
        "port": int(target["port"]),
        "user": target["user"],
        "password": "",
        "db": target["database"],
        "autocommit": True,
    }
    pool: Any = None
    held: Any = None
    if pooled:
        pool = await asyncmy.create_pool(minsize=1, maxsize=POOL_SIZE, **params)
        bench.info["pool"] = f"minsize=1, maxsize={POOL_SIZE}, autocommit"
    else:
        held = await asyncmy.connect(**params)

    @contextlib.asynccontextmanager
    async def connection() -> AsyncIterator[Any]:
        if held is not None:
            yield held
        else:
            async with pool.acquire() as conn:
                yield conn

    async def point_held(ids: Sequence[int]) -> None:
        for i in ids:
            async with held.cursor() as cur:
                await cur.execute(SELECT_ONE, (i,))
                await cur.fetchone()

    async def point_pool(ids: Sequence[int]) -> None:
        for i in ids:
            async with pool.acquire() as conn, conn.cursor() as cur:
                await cur.execute(SELECT_ONE, (i,))
                await cur.fetchone()

    point = point_pool if pooled else point_held

    async def fetch(reps: Sequence[int]) -> None:
        last: object = None
        for _ in reps:
            async with connection() as conn, conn.cursor() as cur:
                await cur.execute(SELECT_MANY, (fetch_rows,))
                rows = await cur.fetchall()
            for r in rows:
                last = (r[0], r[1], r[2], r[3], r[4])
        read_sink(last)

    async def insert(rows: Sequence[tuple[Any, ...]]) -> None:
        for values in rows:
            async with connection() as conn, conn.cursor() as cur:
                await cur.execute(INSERT_EVENT, values)

    batch = [r.typed_tuple() for r in inputs.many_rows]

    async def many(reps: Sequence[int]) -> None:
        for _ in reps:
            async with connection() as conn, conn.cursor() as cur:
                await cur.executemany(INSERT_BULK, batch)

    async def concurrent(ids: Sequence[int]) -> None:
        await asyncio.gather(*(point_pool(part) for part in split(ids, tasks)))

    try:
        await bench.measure_workloads(
            inputs,
            point=point,
            fetch=fetch,
            insert=insert,
            insert_values=RowData.typed_tuple,
            many=many,
            concurrent=concurrent if pooled else None,
        )
    finally:
        if held is not None:
            await held.ensure_closed()
        if pool is not None:
            pool.close()
            await pool.wait_closed()
