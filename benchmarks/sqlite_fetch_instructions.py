"""Instructions per row of workload (b) on SQLite, counted with valgrind's callgrind.

Fetches the 1,000 rows of five columns (int, text, bool, timestamp, float) of workload (b),
from a file seeded as the benchmark seeds it, and reads every field: with the stdlib
``sqlite3`` (``fetchall()``, by position, as the benchmark's floor does), and through
``Database.fetch_all`` with a Core ``select()`` read by name, with raw SQL read by name, and
with the Core ``select()`` again with the C reader off (every read through the ``sqlite3``
module, as before the reader). Each variant runs under ``valgrind --tool=callgrind`` twice,
with 0 and with ``--fetches`` fetches after 3 untimed ones; the difference divided by the rows
fetched is printed. Counts are deterministic where timings on a shared machine are not.

Under valgrind every statement runs about 50 times slower, so the budget after which a read
moves to a worker thread is raised: the counts are of reads stepped on the loop, as they run
at full speed.

    python benchmarks/sqlite_fetch_instructions.py

Needs valgrind (Debian: ``apt-get install valgrind``) and the repository's virtual environment.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import tempfile

from benchlib import callgrind
from benchlib.common import COLUMNS, Sizes
from benchlib.sqlite import prepare

ROWS = Sizes().fetch_rows
VARIANTS = ("sqlite3", "core_by_name", "raw_by_name", "core_by_name_without_reader")


def measure(path: str, variant: str, fetches: int) -> None:
    """The measured body: 3 untimed fetches, then ``fetches`` more."""
    last: object = None
    if variant == "sqlite3":
        conn = sqlite3.connect(path)
        for _ in range(3 + fetches):
            cursor = conn.execute(f"SELECT {COLUMNS} FROM items WHERE id <= ?", (ROWS,))
            for r in cursor.fetchall():
                last = (r[0], r[1], r[2], r[3], r[4])
        conn.close()
        return
    from benchlib.core_schema import items
    from sqlalchemy import select

    import aiodatabases
    from aiodatabases.backends import sqlite as backend

    backend._BUDGET = 100.0  # type: ignore[attr-defined]  # see the module's docstring
    if variant.endswith("without_reader"):
        backend._Reader = None

    async def run() -> None:
        nonlocal last
        db = aiodatabases.Database(f"sqlite:///{path}")
        await db.connect()
        for _ in range(3 + fetches):
            if variant == "raw_by_name":
                rows = await db.fetch_all(
                    f"SELECT {COLUMNS} FROM items WHERE id <= :last", {"last": ROWS}
                )
            else:
                rows = await db.fetch_all(select(items).where(items.c.id <= ROWS))
            for r in rows:
                last = (r["id"], r["name"], r["active"], r["created_at"], r["score"])
        await db.disconnect()

    asyncio.run(run())


def count(path: str, variant: str, fetches: int) -> int:
    """Run this script under callgrind; return the instructions it collected."""
    return callgrind.instructions(__file__, ["--inner", path, variant, str(fetches)])


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--inner":
        measure(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fetches", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = prepare(tmp, Sizes(), {})["path"]  # the benchmark's own seeded file
        per_row = {}
        for variant in VARIANTS:
            base = count(path, variant, 0)
            total = count(path, variant, args.fetches)
            per_row[variant] = (total - base) / (args.fetches * ROWS)
        floor = per_row["sqlite3"]
        for variant, instructions in per_row.items():
            ratio = floor / instructions
            print(f"{variant:30} {instructions:8,.0f} instructions a row ({ratio:.2f}x)")


if __name__ == "__main__":
    main()
