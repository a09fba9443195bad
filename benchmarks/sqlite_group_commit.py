#!/usr/bin/env python3
"""What SQLite group commit does for concurrent writers, and that a lone writer loses nothing.

Usage::

    .venv/bin/python benchmarks/sqlite_group_commit.py             # 5 interleaved repetitions
    .venv/bin/python benchmarks/sqlite_group_commit.py --reps 3 --writes 20000

One process, one fresh file database per run (WAL, ``synchronous=normal``, the defaults).
Each run inserts ``--writes`` rows with ``database.execute()`` and no connection held, in one
of two ways:

- ``64 tasks``: 64 tasks in ``asyncio.gather``, each inserting its share in a loop, yielding
  to the loop between inserts as a request handler does (``asyncio.sleep(0)``);
- ``1 task``: one task inserting them all in a loop.

into one of two tables: ``plain`` (the FastAPI tutorial's notes: id, text, completed) and
``indexed`` (the same with a timestamp and four secondary indexes, so that a commit writes
several WAL pages, as the notes service's does). Every combination runs with the library's
default (``group_commit`` on) and with ``group_commit=false``, one run of each per
repetition, alternating. Prints medians over repetitions of inserts/s and of the per-insert
latency (p50, p99) and the ratio on/off.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import aiodatabases

SCHEMAS = {
    "plain": ("CREATE TABLE notes (id INTEGER PRIMARY KEY, text VARCHAR(200), completed BOOLEAN)",),
    "indexed": (
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, text VARCHAR(200), completed BOOLEAN,"
        " owner INTEGER NOT NULL, stamp TEXT NOT NULL)",
        "CREATE INDEX ix_notes_stamp ON notes (owner, stamp, id)",
        "CREATE INDEX ix_notes_text ON notes (owner, text, id)",
        "CREATE INDEX ix_notes_completed ON notes (owner, completed, id)",
        "CREATE INDEX ix_notes_id ON notes (owner, id)",
    ),
}
INSERTS = {
    "plain": "INSERT INTO notes (text, completed) VALUES (:text, :completed)",
    "indexed": (
        "INSERT INTO notes (text, completed, owner, stamp)"
        " VALUES (:text, :completed, :owner, :stamp)"
    ),
}
TASKS = {"64 tasks": 64, "1 task": 1}
MODES = {"group_commit": "", "group_commit=false": "?group_commit=false"}


async def run(path: Path, table: str, tasks: int, query: str, writes: int) -> dict[str, float]:
    """Insert ``writes`` rows from ``tasks`` tasks; return inserts/s and latency in ms."""
    async with aiodatabases.Database(f"sqlite:///{path}{query}") as database:
        for statement in SCHEMAS[table]:
            await database.execute(statement)
        insert = INSERTS[table]
        latencies: list[float] = []

        async def writer(worker: int, count: int) -> None:
            for i in range(count):
                values: dict[str, object] = {"text": f"note {worker} {i}", "completed": False}
                if table == "indexed":
                    values |= {"owner": worker % 8, "stamp": f"2026-11-30 10:{i % 60:02}"}
                started = time.perf_counter()
                await database.execute(insert, values)
                latencies.append(time.perf_counter() - started)
                if tasks > 1:
                    await asyncio.sleep(0)

        share = writes // tasks
        started = time.perf_counter()
        await asyncio.gather(*(writer(w, share) for w in range(tasks)))
        elapsed = time.perf_counter() - started
        stored = await database.fetch_val("SELECT count(*) FROM notes")
        if stored != share * tasks:
            raise RuntimeError(f"{stored} rows stored, {share * tasks} acknowledged")
    latencies.sort()
    return {
        "rate": share * tasks / elapsed,
        "p50": latencies[len(latencies) // 2] * 1000,
        "p99": latencies[int(len(latencies) * 0.99)] * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--writes", type=int, default=12_800)
    args = parser.parse_args()
    samples: dict[tuple[str, str, str], list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="group-commit-") as tmp:
        for rep in range(args.reps):
            for table in SCHEMAS:
                for label, tasks in TASKS.items():
                    for mode, query in MODES.items():
                        path = Path(tmp) / f"{rep}-{table}-{tasks}-{len(query)}.db"
                        result = asyncio.run(run(path, table, tasks, query, args.writes))
                        samples.setdefault((table, label, mode), []).append(result)
    print(f"{args.reps} interleaved repetitions, {args.writes} inserts per run; medians\n")
    print("| table | writers | mode | inserts/s | p50 ms | p99 ms | on / off |")
    print("|---|---|---|---|---|---|---|")
    for table in SCHEMAS:
        for label in TASKS:
            medians = {
                mode: {
                    key: statistics.median(s[key] for s in samples[(table, label, mode)])
                    for key in ("rate", "p50", "p99")
                }
                for mode in MODES
            }
            on, off = medians["group_commit"]["rate"], medians["group_commit=false"]["rate"]
            for mode, m in medians.items():
                ratio = f"{on / off:.2f}x" if mode == "group_commit" else ""
                print(
                    f"| {table} | {label} | {mode} | {m['rate']:,.0f} | {m['p50']:.3f} "
                    f"| {m['p99']:.3f} | {ratio} |"
                )


if __name__ == "__main__":
    main()
