"""Contenders with the ``databases`` API on a server: aiodatabases and encode's databases 0.9.

The worker option ``lib`` names the module to import (``aiodatabases`` or ``databases``) and
``scheme`` the URL scheme (``postgresql+asyncpg``, ``mysql+asyncmy`` ...) put in front of the
prepared database's address. The pool is capped at 10 connections (``max_size=10``, as for
every pooled contender); everything else is the library's default. Timestamps are passed as
``datetime`` objects everywhere (the server drivers take no text for a timestamp parameter).
The workloads are in :mod:`benchlib.databases_workloads`.
"""

from __future__ import annotations

import importlib
from typing import Any

from ..common import Bench, RowData
from ..databases_workloads import run_workloads

POOL_SIZE = 10


async def run(bench: Bench, target: dict[str, Any]) -> None:
    """Run every workload against the prepared database with the library named by ``lib``."""
    lib = importlib.import_module(bench.options["lib"])
    url = bench.options["scheme"] + "://" + target["url"].split("://", 1)[1]
    db = lib.Database(url, max_size=POOL_SIZE)
    bench.info["pool"] = f"max_size={POOL_SIZE}"
    await db.connect()
    await run_workloads(bench, db, RowData.typed_dict)
