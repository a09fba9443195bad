"""Benchmark worker: run one contender's workloads once and print a JSON result line.

Started by ``run.py`` inside the contender's own virtual environment, one process per
contender per repetition. It prepares a fresh database with the backend's ``prepare`` function,
imports the contender module and awaits its ``run(bench, target)``, drops the database with the
backend's ``cleanup`` (server backends), then prints one line ``BENCH-RESULT {...}`` on
stdout. Diagnostics go to stderr.

Usage (normally only from run.py)::

    python benchmarks/worker.py --backend sqlite --module benchlib.sqlite.raw_aiosqlite \
        --workdir /tmp/x --sizes '{...}' [--workloads a_point_select,...] \
        [--option key=value ...] [--packages aiosqlite,...]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.metadata
import os
import platform
import sqlite3
import sys
import time
import traceback
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from benchlib.common import WORKLOAD_KEYS, Bench, Sizes, emit_result


def _versions(backend: str, packages: list[str]) -> dict[str, str]:
    """Return the installed version of each package plus Python's (and SQLite's)."""
    out = {"python": platform.python_version()}
    if backend == "sqlite":
        out["sqlite"] = sqlite3.sqlite_version
    for name in packages:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the contender and print the result line; return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", required=True)
    parser.add_argument("--module", required=True, help="contender module, e.g. benchlib.x.y")
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--sizes", required=True, help="JSON produced by Sizes.to_json()")
    parser.add_argument("--workloads", default=",".join(WORKLOAD_KEYS))
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--packages", default="")
    args = parser.parse_args(argv)

    options: dict[str, str] = {}
    for item in args.option:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--option needs KEY=VALUE, got {item!r}")
        options[key] = value
    sizes = Sizes.from_json(args.sizes)
    bench = Bench(
        sizes=sizes,
        workloads=frozenset(w for w in args.workloads.split(",") if w),
        options=options,
    )
    packages = [p for p in args.packages.split(",") if p]
    payload: dict[str, Any] = {
        "versions": _versions(args.backend, packages),
        "results": bench.results,
    }
    started = time.perf_counter()
    target: dict[str, Any] | None = None
    backend: Any = None
    try:
        backend = importlib.import_module(f"benchlib.{args.backend}")
        target = backend.prepare(args.workdir, sizes, options)
        payload["target"] = {k: v for k, v in target.items() if k not in ("password", "url")}
        module = importlib.import_module(args.module)
        asyncio.run(module.run(bench, target))
        payload["target"].update(bench.info)
        inspect = getattr(backend, "inspect", None)
        if inspect is not None:
            payload["target"].update(inspect(target))
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        payload["fatal"] = f"{type(exc).__name__}: {exc}"
    finally:
        cleanup = getattr(backend, "cleanup", None)
        if cleanup is not None and target is not None:
            try:
                cleanup(target)
            except Exception:
                traceback.print_exc(file=sys.stderr)
    payload["wall_s"] = time.perf_counter() - started
    emit_result(payload)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
