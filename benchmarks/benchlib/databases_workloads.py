"""The workloads of the contenders with the ``databases`` API, on any backend.

aiodatabases and encode's databases 0.9 run the same code: ``benchlib.sqlite.databases_api``
and ``benchlib.servers.databases_api`` only build and connect the ``Database`` (URL, pool) and
say how raw SQL gets its values, then hand it here.

Variants: ``raw`` passes a raw SQL string with ``:name`` parameters and a ``values`` dict;
``core`` builds a SQLAlchemy Core statement on every call and passes ``datetime`` objects.
Everything goes through the ``Database`` object with no explicit connection, as an
application would. With the option ``conn`` set to ``1``, workload (a) also runs
``conn_raw``: the raw loop inside ``async with database.connection():``. Workload (b) reads
every field by name (``row["col"]``), also by attribute (``row.col``) when ``attr`` is ``1``,
and by name after a raw SQL query (``raw_by_name``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import select

from .common import COLUMNS, INSERT_COLUMNS, Bench, Inputs, RowData, read_sink, split
from .core_schema import bulk, events, items

SELECT_ONE = f"SELECT {COLUMNS} FROM items WHERE id = :id"
SELECT_MANY = f"SELECT {COLUMNS} FROM items WHERE id <= :last"
_VALUES = "(:name, :active, :created_at, :score)"
INSERT_EVENT = f"INSERT INTO events ({INSERT_COLUMNS}) VALUES {_VALUES}"
INSERT_BULK = f"INSERT INTO bulk ({INSERT_COLUMNS}) VALUES {_VALUES}"


async def run_workloads(
    bench: Bench, db: Any, raw_values: Callable[[RowData], dict[str, Any]]
) -> None:
    """Measure every workload on the connected ``db``, then disconnect it.

    Args:
        raw_values: The values of a row as the raw SQL variants pass them
            (``RowData.raw_dict`` where the driver takes a timestamp as text, else
            ``RowData.typed_dict``).
    """
    inputs = Inputs.build(bench.sizes)
    sizes = bench.sizes
    fetch_rows = sizes.fetch_rows
    tasks = sizes.concurrent_tasks

    async def point_raw(ids: Sequence[int]) -> None:
        for i in ids:
            await db.fetch_one(SELECT_ONE, {"id": i})

    async def point_core(ids: Sequence[int]) -> None:
        for i in ids:
            await db.fetch_one(select(items).where(items.c.id == i))

    async def point_conn_raw(ids: Sequence[int]) -> None:
        async with db.connection() as conn:
            for i in ids:
                await conn.fetch_one(SELECT_ONE, {"id": i})

    async def fetch_by_name(reps: Sequence[int]) -> None:
        last: object = None
        for _ in reps:
            rows = await db.fetch_all(select(items).where(items.c.id <= fetch_rows))
            for r in rows:
                last = (r["id"], r["name"], r["active"], r["created_at"], r["score"])
        read_sink(last)

    async def fetch_raw_by_name(reps: Sequence[int]) -> None:
        last: object = None
        for _ in reps:
            rows = await db.fetch_all(SELECT_MANY, {"last": fetch_rows})
            for r in rows:
                last = (r["id"], r["name"], r["active"], r["created_at"], r["score"])
        read_sink(last)

    async def fetch_by_attr(reps: Sequence[int]) -> None:
        last: object = None
        for _ in reps:
            rows = await db.fetch_all(select(items).where(items.c.id <= fetch_rows))
            for r in rows:
                last = (r.id, r.name, r.active, r.created_at, r.score)
        read_sink(last)

    async def insert_raw(rows: Sequence[dict[str, Any]]) -> None:
        for values in rows:
            await db.execute(INSERT_EVENT, values)

    async def insert_core(rows: Sequence[dict[str, Any]]) -> None:
        for values in rows:
            await db.execute(events.insert(), values)

    batch_raw = [raw_values(r) for r in inputs.many_rows]
    batch_core = [r.typed_dict() for r in inputs.many_rows]

    async def many_raw(reps: Sequence[int]) -> None:
        for _ in reps:
            await db.execute_many(INSERT_BULK, batch_raw)

    async def many_core(reps: Sequence[int]) -> None:
        for _ in reps:
            await db.execute_many(bulk.insert(), batch_core)

    async def concurrent_raw(ids: Sequence[int]) -> None:
        await asyncio.gather(*(point_raw(part) for part in split(ids, tasks)))

    async def concurrent_core(ids: Sequence[int]) -> None:
        await asyncio.gather(*(point_core(part) for part in split(ids, tasks)))

    points = [("raw", point_raw), ("core", point_core)]
    if bench.options.get("conn") == "1":
        points.append(("conn_raw", point_conn_raw))
    fetchers = [("by_name", fetch_by_name)]
    if bench.options.get("attr") == "1":
        fetchers.append(("by_attr", fetch_by_attr))
    fetchers.append(("raw_by_name", fetch_raw_by_name))
    inserts = (
        ("raw", insert_raw, raw_values),
        ("core", insert_core, RowData.typed_dict),
    )
    try:
        for variant, point in points:
            await bench.measure_point(variant, point, inputs)
        for variant, fetch in fetchers:
            await bench.measure_fetch(variant, fetch, inputs)
        for variant, insert, values_of in inserts:
            await bench.measure_insert(variant, insert, inputs, values_of)
        for variant, many in (("raw", many_raw), ("core", many_core)):
            await bench.measure_many(variant, many, inputs)
        for variant, concurrent in (("raw", concurrent_raw), ("core", concurrent_core)):
            await bench.measure_concurrent(variant, concurrent, inputs)
    finally:
        await db.disconnect()
