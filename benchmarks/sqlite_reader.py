"""The SQLite C reader on and off, interleaved in one process (aiodatabases only).

A table of 10,000 notes seeded as the HTTP benchmark seeds it (the tutorial's columns), one
connection held; each round runs, with the reader and then without it (the order alternating
between rounds), 20,000 point selects by id with ``fetch_one`` and 2,000 pages of 20 rows with
``fetch_all``, as the notes routes "get" and "list" do. Prints the median rate of each over the rounds and the ratio.

    python benchmarks/sqlite_reader.py --rounds 7
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiodatabases
from aiodatabases.backends.sqlite import SQLiteConnection

sys.path.insert(0, str(Path(__file__).resolve().parent / "http"))
from seed import seed_sqlite  # the HTTP benchmark's notes table and rows

GET = "SELECT id, text, completed FROM notes WHERE id = :id"
LIST = "SELECT id, text, completed FROM notes ORDER BY id LIMIT 20 OFFSET :offset"
ROWS = 10_000


async def run(path: Path, rounds: int) -> dict[tuple[str, bool], list[float]]:
    rates: dict[tuple[str, bool], list[float]] = {
        (kind, on): [] for kind in ("get", "list") for on in (True, False)
    }
    async with aiodatabases.Database(f"sqlite:///{path}") as db, db.connection() as conn:
        held = conn._raw
        assert isinstance(held, SQLiteConnection)
        reader = held._reader
        if reader is None:
            raise SystemExit("the C reader is not in use here (not built, or turned off)")
        for number in range(rounds):
            for on in (True, False) if number % 2 else (False, True):
                held._reader = reader if on else None
                start = time.perf_counter()
                for i in range(20_000):
                    await db.fetch_one(GET, {"id": i % ROWS + 1})
                rates[("get", on)].append(20_000 / (time.perf_counter() - start))
                start = time.perf_counter()
                for i in range(2_000):
                    await db.fetch_all(LIST, {"offset": i % 500})
                rates[("list", on)].append(2_000 / (time.perf_counter() - start))
        held._reader = reader
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "notes.db"
        seed_sqlite(str(path), ROWS)
        rates = asyncio.run(run(path, args.rounds))
    for kind, unit in (("get", "selects/s"), ("list", "pages/s")):
        on = statistics.median(rates[(kind, True)])
        off = statistics.median(rates[(kind, False)])
        print(f"{kind}: reader on {on:,.0f} {unit}, off {off:,.0f} {unit}: {on / off:.2f}x")


if __name__ == "__main__":
    main()
