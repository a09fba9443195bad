"""Contender: SQLAlchemy 2.x asyncio Core on a server (``postgresql+asyncpg``, ``mysql+asyncmy``).

The worker option ``scheme`` is the dialect+driver. The pool is ``pool_size=10,
max_overflow=0``, the same cap of 10 connections as every pooled contender. The workloads are
in :mod:`benchlib.sqlalchemy_workloads`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import create_async_engine

from ..common import Bench
from ..sqlalchemy_workloads import run_workloads

POOL_SIZE = 10


async def run(bench: Bench, target: dict[str, Any]) -> None:
    """Run every workload against the prepared database."""
    url = bench.options["scheme"] + "://" + target["url"].split("://", 1)[1]
    engine = create_async_engine(url, pool_size=POOL_SIZE, max_overflow=0)
    bench.info["pool"] = f"pool_size={POOL_SIZE}, max_overflow=0"
    await run_workloads(bench, engine)
