"""Contender: SQLAlchemy 2.x asyncio Core on ``sqlite+aiosqlite`` with its default pool.

With the option ``synchronous``, a ``connect`` event sets ``PRAGMA synchronous`` on every
connection. The workloads are in :mod:`benchlib.sqlalchemy_workloads`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import create_async_engine

from ..common import Bench
from ..sqlalchemy_workloads import run_workloads


async def run(bench: Bench, target: dict[str, Any]) -> None:
    """Run every workload against ``target["path"]``."""
    engine = create_async_engine(f"sqlite+aiosqlite:///{target['path']}")
    synchronous = bench.options.get("synchronous")
    if synchronous:
        bench.info["synchronous"] = synchronous

        @event.listens_for(engine.sync_engine, "connect")
        def _pragma(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute(f"PRAGMA synchronous={synchronous}")
            cursor.close()

    await run_workloads(bench, engine)
