"""Contender: the standard library's synchronous ``sqlite3`` module (the floor).

One connection with the default isolation level: ``execute`` + ``commit`` per insert and
``executemany`` + ``commit`` per batch. Rows are plain tuples read by index, the timestamp stays
text and the boolean an integer (no type conversion). Workload (e) cannot be concurrent here: the
same selects run sequentially on the one connection.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from ..common import COLUMNS, INSERT_COLUMNS, Bench, Inputs, RowData, read_sink

SELECT_ONE = f"SELECT {COLUMNS} FROM items WHERE id = ?"
SELECT_MANY = f"SELECT {COLUMNS} FROM items WHERE id <= ?"
INSERT_EVENT = f"INSERT INTO events ({INSERT_COLUMNS}) VALUES (?, ?, ?, ?)"
INSERT_BULK = f"INSERT INTO bulk ({INSERT_COLUMNS}) VALUES (?, ?, ?, ?)"


async def run(bench: Bench, target: dict[str, Any]) -> None:
    """Run every workload against ``target["path"]``."""
    inputs = Inputs.build(bench.sizes)
    fetch_rows = bench.sizes.fetch_rows
    conn = sqlite3.connect(target["path"])
    synchronous = bench.options.get("synchronous")
    if synchronous:
        conn.execute(f"PRAGMA synchronous={synchronous}")
        bench.info["synchronous"] = synchronous
    execute = conn.execute

    async def point(ids: Sequence[int]) -> None:
        for i in ids:
            execute(SELECT_ONE, (i,)).fetchone()

    async def fetch(reps: Sequence[int]) -> None:
        last: object = None
        for _ in reps:
            for r in execute(SELECT_MANY, (fetch_rows,)).fetchall():
                last = (r[0], r[1], r[2], r[3], r[4])
        read_sink(last)

    commit = conn.commit

    async def insert(rows: Sequence[tuple[Any, ...]]) -> None:
        for params in rows:
            execute(INSERT_EVENT, params)
            commit()

    batch = [r.raw_tuple() for r in inputs.many_rows]

    async def many(reps: Sequence[int]) -> None:
        for _ in reps:
            conn.executemany(INSERT_BULK, batch)
            commit()

    try:
        await bench.measure_point("raw", point, inputs)
        await bench.measure_fetch("by_index", fetch, inputs)
        await bench.measure_insert("raw", insert, inputs, RowData.raw_tuple)
        await bench.measure_many("raw", many, inputs)
        await bench.measure_concurrent("sequential", point, inputs)
    finally:
        conn.close()
