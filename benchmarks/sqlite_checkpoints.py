#!/usr/bin/env python3
"""How WAL checkpoints on SQLite hold up the event loop: in commits, or on a worker thread.

Usage::

    .venv/bin/python benchmarks/sqlite_checkpoints.py            # 5 interleaved repetitions
    .venv/bin/python benchmarks/sqlite_checkpoints.py --reps 3 --writes 3000

One process, one file database per run. A writer task, on a ``Database`` of one connection,
inserts rows into a table with four indexes (several WAL pages a write, as a real schema
writes), yielding to the loop after each; meanwhile a ticker sleeps 1 ms at a time and records
how late it wakes up, and a reader, on a ``Database`` of its own, runs a point select every
millisecond. Two ways of checkpointing, one run of each per repetition, alternating:

- ``in commits``: SQLite's own, at 1000 pages, inside the commit that crosses them (the
  library's checkpoints off with ``wal_autocheckpoint=0``, SQLite's set back to 1000 on the
  connection), which is how a checkpoint runs when statements run on the loop without more;
- ``background``: the library's default, on a worker thread (docs/sqlite.md).

Prints medians over repetitions of writes/s and of the ticker's lateness (p50, p99, max) and
of the reader's p99 latency.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import aiodatabases

SCHEMA = (
    "CREATE TABLE items (id INTEGER PRIMARY KEY, owner INTEGER NOT NULL, title TEXT NOT NULL,"
    " body TEXT NOT NULL, created TEXT NOT NULL, updated TEXT NOT NULL)",
    "CREATE INDEX ix_items_created ON items (owner, created, id)",
    "CREATE INDEX ix_items_updated ON items (owner, updated, id)",
    "CREATE INDEX ix_items_title ON items (owner, title, id)",
    "CREATE INDEX ix_items_body ON items (owner, body, id)",
)
INSERT = (
    "INSERT INTO items (owner, title, body, created, updated)"
    " VALUES (1, :title, :body, :stamp, :stamp)"
)
MODES = ("in commits", "background")


async def run(path: Path, mode: str, writes: int) -> dict[str, float]:
    """One run on a fresh database; return its figures."""
    url = f"sqlite:///{path}"
    if mode == "in commits":
        url += "?wal_autocheckpoint=0"
    async with (
        aiodatabases.Database(url, max_size=1) as database,
        aiodatabases.Database(f"sqlite:///{path}") as readers,
    ):
        if mode == "in commits":
            await database.execute("PRAGMA wal_autocheckpoint = 1000")
        for statement in SCHEMA:
            await database.execute(statement)
        done = False
        lateness: list[float] = []
        reads: list[float] = []

        async def ticker() -> None:
            while not done:
                start = time.perf_counter()
                await asyncio.sleep(0.001)
                lateness.append(time.perf_counter() - start - 0.001)

        async def reader() -> None:
            while not done:
                start = time.perf_counter()
                await readers.fetch_one("SELECT id, title FROM items WHERE id = :id", {"id": 1})
                reads.append(time.perf_counter() - start)
                await asyncio.sleep(0.001)

        others = [asyncio.create_task(ticker()), asyncio.create_task(reader())]
        started = time.perf_counter()
        for n in range(writes):
            stamp = f"2026-01-01 00:00:{n % 60:02}.{n:06}"
            await database.execute(
                INSERT, {"title": f"title {n * 7919 % writes}", "body": f"body {n}", "stamp": stamp}
            )
            await asyncio.sleep(0)
        elapsed = time.perf_counter() - started
        done = True
        await asyncio.gather(*others)
    lateness.sort()
    reads.sort()
    return {
        "writes/s": writes / elapsed,
        "late p50 ms": lateness[len(lateness) // 2] * 1e3,
        "late p99 ms": lateness[int(len(lateness) * 0.99)] * 1e3,
        "late max ms": lateness[-1] * 1e3,
        "read p99 ms": reads[int(len(reads) * 0.99)] * 1e3,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--writes", type=int, default=6000)
    args = parser.parse_args()
    results: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.reps):
            for mode in MODES if rep % 2 == 0 else reversed(MODES):
                path = Path(tmp) / f"rep{rep}-{mode.replace(' ', '-')}.db"
                results[mode].append(await run(path, mode, args.writes))
    columns = list(results[MODES[0]][0])
    print(f"medians of {args.reps} interleaved repetitions, {args.writes} writes each\n")
    print("| checkpoints | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for mode, runs in results.items():
        cells = [statistics.median(run[column] for run in runs) for column in columns]
        print(f"| {mode} | " + " | ".join(f"{cell:,.2f}" for cell in cells) + " |")


if __name__ == "__main__":
    asyncio.run(main())
