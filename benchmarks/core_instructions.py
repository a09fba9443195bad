"""Instructions per call of compiling and binding a Core statement built afresh (callgrind).

Counts are deterministic where timings on a shared machine are not: the script runs itself
under ``valgrind --tool=callgrind`` twice, once with ``--calls 0`` and once with ``--calls N``,
and prints the difference divided by N: the user-space instructions of one
``select(items).where(items.c.id == i)`` built and prepared (cache key, cached compilation,
bound arguments), or one ``events.insert()`` prepared with a values dict. Nothing is executed
on a database, so no timer or event loop turn changes the count.

    python benchmarks/core_instructions.py                      # this checkout's src/
    python benchmarks/core_instructions.py --source /tmp/old    # another checkout (a worktree)

Needs valgrind (Debian: ``apt-get install valgrind``) and the repository's virtual environment.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

from benchlib import callgrind

HERE = Path(__file__).resolve().parent
WORKLOADS = ("select", "insert")


def measure(calls: int, workload: str) -> None:
    """The measured body: prepare ``calls`` statements after 50 untimed ones."""
    sys.path.insert(0, str(HERE))
    from benchlib.core_schema import events, items
    from sqlalchemy import select

    from aiodatabases._compiler import Compiler
    from aiodatabases.backends.sqlite import SQLiteDialect

    compiler = Compiler(SQLiteDialect(paramstyle="qmark"))
    when = dt.datetime(2026, 1, 1)
    for i in range(50 + calls):
        if workload == "select":
            compiler.prepare(select(items).where(items.c.id == i), None)
        else:
            values = {"id": i, "name": "n", "active": True, "created_at": when, "score": 1.5}
            compiler.prepare(events.insert(), values)


def count(calls: int, workload: str, source: Path | None) -> int:
    """Run this script under callgrind; return the instructions it collected."""
    env = {} if source is None else {"PYTHONPATH": str(source.resolve() / "src")}
    args = ["--inner", "--calls", str(calls), "--workload", workload]
    return callgrind.instructions(__file__, args, env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--workload", choices=WORKLOADS)
    parser.add_argument("--source", type=Path, help="measure this checkout's src/")
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        measure(args.calls, args.workload)
        return
    for workload in [args.workload] if args.workload else WORKLOADS:
        base = count(0, workload, args.source)
        total = count(args.calls, workload, args.source)
        print(f"{workload}: {(total - base) / args.calls:,.0f} instructions a call")


if __name__ == "__main__":
    main()
