"""Contenders with the ``databases`` API on SQLite: aiodatabases and encode's databases 0.9.

The worker option ``lib`` names the module to import (``aiodatabases`` or ``databases``) and
``url`` the URL template (``{path}`` is replaced by the absolute database file path); the
library's default pool and autocommit behaviour are kept. The raw SQL variants get the
timestamp as text, like the raw drivers. The workloads are in
:mod:`benchlib.databases_workloads`.
"""

from __future__ import annotations

import importlib
from typing import Any

from ..common import Bench, RowData
from ..databases_workloads import run_workloads


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
    db = lib.Database(url)
    await db.connect()
    await run_workloads(bench, db, RowData.raw_dict)
