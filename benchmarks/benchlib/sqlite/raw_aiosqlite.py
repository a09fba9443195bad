"""Contender: raw ``aiosqlite`` (the asyncio driver that databases 0.9 and SQLAlchemy use).

One connection held for the whole run, default isolation level: ``execute`` + ``commit`` per
insert, ``executemany`` + ``commit`` per batch, ``async with conn.execute(...) as cur:
await cur.fetchone()`` per select. Rows are tuples read by index, without type conversion.

Workload (e) is measured twice: ``shared_conn`` (all 64 tasks share the one connection, which is
how most aiosqlite applications use it, and which is the variant ratios use) and
``conn_per_task`` (each task owns a connection opened before timing starts, like a warm pool).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import aiosqlite

from ..common import COLUMNS, INSERT_COLUMNS, Bench, Inputs, RowData, read_sink, split

SELECT_ONE = f"SELECT {COLUMNS} FROM items WHERE id = ?"
SELECT_MANY = f"SELECT {COLUMNS} FROM items WHERE id <= ?"
INSERT_EVENT = f"INSERT INTO events ({INSERT_COLUMNS}) VALUES (?, ?, ?, ?)"
INSERT_BULK = f"INSERT INTO bulk ({INSERT_COLUMNS}) VALUES (?, ?, ?, ?)"


async def _select_loop(conn: aiosqlite.Connection, ids: Sequence[int]) -> None:
    """Run one point select per id on ``conn``."""
    for i in ids:
        async with conn.execute(SELECT_ONE, (i,)) as cur:
            await cur.fetchone()


async def _connect(path: str, synchronous: str | None) -> aiosqlite.Connection:
    """Open a connection, applying ``PRAGMA synchronous`` when asked to."""
    conn = await aiosqlite.connect(path)
    if synchronous:
        await conn.execute(f"PRAGMA synchronous={synchronous}")
    return conn


async def run(bench: Bench, target: dict[str, Any]) -> None:
    """Run every workload against ``target["path"]``."""
    inputs = Inputs.build(bench.sizes)
    sizes = bench.sizes
    fetch_rows = sizes.fetch_rows
    tasks = sizes.concurrent_tasks
    path = target["path"]
    synchronous = bench.options.get("synchronous")
    if synchronous:
        bench.info["synchronous"] = synchronous
    conn = await _connect(path, synchronous)

    async def point(ids: Sequence[int]) -> None:
        for i in ids:
            async with conn.execute(SELECT_ONE, (i,)) as cur:
                await cur.fetchone()

    async def fetch(reps: Sequence[int]) -> None:
        last: object = None
        for _ in reps:
            async with conn.execute(SELECT_MANY, (fetch_rows,)) as cur:
                rows = await cur.fetchall()
            for r in rows:
                last = (r[0], r[1], r[2], r[3], r[4])
        read_sink(last)

    async def insert(rows: Sequence[tuple[Any, ...]]) -> None:
        for params in rows:
            await conn.execute(INSERT_EVENT, params)
            await conn.commit()

    batch = [r.raw_tuple() for r in inputs.many_rows]

    async def many(reps: Sequence[int]) -> None:
        for _ in reps:
            await conn.executemany(INSERT_BULK, batch)
            await conn.commit()

    async def concurrent_shared(ids: Sequence[int]) -> None:
        await asyncio.gather(*(_select_loop(conn, part) for part in split(ids, tasks)))

    try:
        await bench.measure_point("raw", point, inputs)
        await bench.measure_fetch("by_index", fetch, inputs)
        await bench.measure_insert("raw", insert, inputs, RowData.raw_tuple)
        await bench.measure_many("raw", many, inputs)
        await bench.measure_concurrent("shared_conn", concurrent_shared, inputs)
    finally:
        await conn.close()

    if not bench.wants("e_concurrent"):
        return
    conns: list[aiosqlite.Connection] = []
    try:
        for _ in range(tasks):
            conns.append(await _connect(path, synchronous))

        async def concurrent_per_task(ids: Sequence[int]) -> None:
            parts = split(ids, tasks)
            await asyncio.gather(
                *(_select_loop(c, part) for c, part in zip(conns, parts, strict=True))
            )

        await bench.measure_concurrent("conn_per_task", concurrent_per_task, inputs)
    finally:
        for c in conns:
            await c.close()
