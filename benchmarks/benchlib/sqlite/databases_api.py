"""Contenders with the ``databases`` API: aiodatabases and encode's databases 0.9.

The same code drives both; the worker option ``lib`` names the module to import
(``aiodatabases`` or ``databases``) and ``url`` the URL template (``{path}`` is replaced by the
absolute database file path). No explicit connection or transaction is used anywhere: every call
goes through the ``Database`` object as an application would, with the library's default pool
and autocommit behaviour.

Variants: ``raw`` passes a raw SQL string with ``:name`` parameters and a ``values`` dict (the
timestamp as text, like the raw drivers get it); ``core`` builds a SQLAlchemy Core statement on
every call and passes ``datetime`` objects. Workload (b) reads every field by name
(``row["col"]``) and, when the option ``attr`` is ``1``, also by attribute (``row.col``).
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select

from ..common import COLUMNS, INSERT_COLUMNS, Bench, Inputs, read_sink, split
from .core_schema import bulk, events, items

SELECT_ONE = f"SELECT {COLUMNS} FROM items WHERE id = :id"
SELECT_MANY = f"SELECT {COLUMNS} FROM items WHERE id <= :last"
_VALUES = "(:name, :active, :created_at, :score)"
INSERT_EVENT = f"INSERT INTO events ({INSERT_COLUMNS}) VALUES {_VALUES}"
INSERT_BULK = f"INSERT INTO bulk ({INSERT_COLUMNS}) VALUES {_VALUES}"


async def run(bench: Bench, target: dict[str, Any]) -> None:
    """Run every workload against ``target["path"]`` with the library named by ``lib``."""
    lib = importlib.import_module(bench.options["lib"])
    url = bench.options["url"].format(path=target["path"])
    synchronous = bench.options.get("synchronous")
    if synchronous:
        if bench.options.get("synchronous_via_url") == "1":
            url += f"?synchronous={synchronous}"
            bench.info["synchronous"] = synchronous
        else:
            bench.info["synchronous"] = "library default (no per-connection hook)"
    inputs = Inputs.build(bench.sizes)
    sizes = bench.sizes
    fetch_rows = sizes.fetch_rows
    tasks = sizes.concurrent_tasks
    db = lib.Database(url)
    await db.connect()

    async def point_raw(ids: Sequence[int]) -> None:
        for i in ids:
            await db.fetch_one(SELECT_ONE, {"id": i})

    async def point_core(ids: Sequence[int]) -> None:
        for i in ids:
            await db.fetch_one(select(items).where(items.c.id == i))

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

    batch_raw = [r.raw_dict() for r in inputs.many_rows]
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

    try:
        for variant, point in (("raw", point_raw), ("core", point_core)):
            await bench.measure(
                "a_point_select", variant, point, inputs.point_ids, warmup=inputs.point_warmup
            )
        fetchers = [("by_name", fetch_by_name)]
        if bench.options.get("attr") == "1":
            fetchers.append(("by_attr", fetch_by_attr))
        fetchers.append(("raw_by_name", fetch_raw_by_name))
        for variant, fetch in fetchers:
            await bench.measure(
                "b_fetch_rows",
                variant,
                fetch,
                inputs.fetch_items,
                warmup=inputs.fetch_warmup,
                per_item=fetch_rows,
                chunk=1,
            )
        await bench.measure(
            "c_insert",
            "raw",
            insert_raw,
            [r.raw_dict() for r in inputs.insert_rows],
            warmup=[r.raw_dict() for r in inputs.insert_warmup],
        )
        await bench.measure(
            "c_insert",
            "core",
            insert_core,
            [r.typed_dict() for r in inputs.insert_rows],
            warmup=[r.typed_dict() for r in inputs.insert_warmup],
        )
        for variant, many in (("raw", many_raw), ("core", many_core)):
            await bench.measure(
                "d_execute_many",
                variant,
                many,
                inputs.many_items,
                warmup=inputs.many_warmup,
                per_item=len(inputs.many_rows),
                chunk=1,
            )
        for variant, concurrent in (("raw", concurrent_raw), ("core", concurrent_core)):
            await bench.measure(
                "e_concurrent",
                variant,
                concurrent,
                inputs.concurrent_ids,
                warmup=inputs.concurrent_warmup,
                chunk=len(inputs.concurrent_ids),
            )
    finally:
        await db.disconnect()
