"""Contender: raw ``asyncpg``, on one held connection (``mode=held``) or through its pool.

``held`` (the ceiling): one ``asyncpg.connect()`` for the whole run; ``fetchrow`` per point
select, ``fetch`` for (b), ``execute`` per insert (autocommit), ``executemany`` per batch (one
pipelined, atomic call). It measures (a)-(d): 64 tasks cannot share one asyncpg connection.

``pool``: ``asyncpg.create_pool(max_size=10)`` with its defaults otherwise, and the pool's
per-call methods (``pool.fetchrow``, ``pool.execute`` ...), which acquire a connection, run the
statement and release it (with asyncpg's reset round trip) on every call. It measures (a)-(e);
(e) has 64 tasks share the pool.

Rows are asyncpg ``Record`` objects read by index; the driver decodes every type itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import asyncpg

from ..common import COLUMNS, INSERT_COLUMNS, Bench, Inputs, RowData, read_sink, split

SELECT_ONE = f"SELECT {COLUMNS} FROM items WHERE id = $1"
SELECT_MANY = f"SELECT {COLUMNS} FROM items WHERE id <= $1"
INSERT_EVENT = f"INSERT INTO events ({INSERT_COLUMNS}) VALUES ($1, $2, $3, $4)"
INSERT_BULK = f"INSERT INTO bulk ({INSERT_COLUMNS}) VALUES ($1, $2, $3, $4)"
POOL_SIZE = 10


async def run(bench: Bench, target: dict[str, Any]) -> None:
    """Run every workload against the prepared database."""
    inputs = Inputs.build(bench.sizes)
    sizes = bench.sizes
    fetch_rows = sizes.fetch_rows
    tasks = sizes.concurrent_tasks
    pooled = bench.options.get("mode") == "pool"
    dsn = target["url"]
    if pooled:
        runner: Any = await asyncpg.create_pool(dsn, max_size=POOL_SIZE)
        bench.info["pool"] = f"max_size={POOL_SIZE}"
    else:
        runner = await asyncpg.connect(dsn)

    fetchrow = runner.fetchrow
    fetch_all = runner.fetch
    execute = runner.execute

    async def point(ids: Sequence[int]) -> None:
        for i in ids:
            await fetchrow(SELECT_ONE, i)

    async def fetch(reps: Sequence[int]) -> None:
        last: object = None
        for _ in reps:
            for r in await fetch_all(SELECT_MANY, fetch_rows):
                last = (r[0], r[1], r[2], r[3], r[4])
        read_sink(last)

    async def insert(rows: Sequence[tuple[Any, ...]]) -> None:
        for params in rows:
            await execute(INSERT_EVENT, *params)

    batch = [r.typed_tuple() for r in inputs.many_rows]

    async def many(reps: Sequence[int]) -> None:
        for _ in reps:
            await runner.executemany(INSERT_BULK, batch)

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
            concurrent=concurrent if pooled else None,
        )
    finally:
        await runner.close()
