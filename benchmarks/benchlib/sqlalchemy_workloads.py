"""The workloads of the SQLAlchemy 2.x asyncio Core contender, on any backend.

The idiomatic per-call pattern: a Core statement built on every call, run on a connection
checked out of the engine's pool for that one call. Reads use ``async with engine.connect() as
conn: (await conn.execute(stmt)).first()`` (the implicit transaction is rolled back on
release); writes use ``async with engine.begin() as conn: await conn.execute(stmt, values)``,
which commits on exit. Rows are read by attribute (``row.col``); workload (e) has 64 tasks
share the engine's pool. ``benchlib.sqlite.sqlalchemy_async`` and
``benchlib.servers.sqlalchemy_async`` only create the engine.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from sqlalchemy import insert, select

from .common import Bench, Inputs, RowData, read_sink, split
from .core_schema import bulk, events, items


async def run_workloads(bench: Bench, engine: Any) -> None:
    """Measure every workload on ``engine`` (an ``AsyncEngine``), then dispose of it."""
    inputs = Inputs.build(bench.sizes)
    sizes = bench.sizes
    fetch_rows = sizes.fetch_rows
    tasks = sizes.concurrent_tasks

    async def point(ids: Sequence[int]) -> None:
        for i in ids:
            async with engine.connect() as conn:
                (await conn.execute(select(items).where(items.c.id == i))).first()

    async def fetch(reps: Sequence[int]) -> None:
        last: object = None
        for _ in reps:
            async with engine.connect() as conn:
                result = await conn.execute(select(items).where(items.c.id <= fetch_rows))
                rows = result.all()
            for r in rows:
                last = (r.id, r.name, r.active, r.created_at, r.score)
        read_sink(last)

    async def insert_one(rows: Sequence[dict[str, Any]]) -> None:
        for values in rows:
            async with engine.begin() as conn:
                await conn.execute(insert(events), values)

    batch = [r.typed_dict() for r in inputs.many_rows]

    async def many(reps: Sequence[int]) -> None:
        for _ in reps:
            async with engine.begin() as conn:
                await conn.execute(insert(bulk), batch)

    async def concurrent(ids: Sequence[int]) -> None:
        await asyncio.gather(*(point(part) for part in split(ids, tasks)))

    try:
        await bench.measure_workloads(
            inputs,
            point=point,
            fetch=fetch,
            insert=insert_one,
            insert_values=RowData.typed_dict,
            many=many,
            concurrent=concurrent,
            query_variant="core",
            fetch_variant="by_attr",
        )
    finally:
        await engine.dispose()
