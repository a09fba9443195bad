"""Liveness and readiness probes."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Request

from aiodatabases.ext.fastapi import DatabaseDep

from ..errors import problem_response
from ..repository import ping
from ..schemas import Problem

__all__ = ["router"]

logger = logging.getLogger("notes.health")

router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live", summary="The process is up")
async def live() -> dict[str, str]:
    """Answer 200 while the process serves requests; it checks nothing else."""
    return {"status": "ok"}


@router.get(
    "/ready",
    summary="The service can serve: its database answers",
    responses={503: {"model": Problem, "description": "The database does not answer."}},
)
async def ready(request: Request, database: DatabaseDep) -> object:
    """Answer 200 when the database answers a query in time, 503 otherwise."""
    timeout: float = request.app.state.settings.ready_timeout
    try:
        async with asyncio.timeout(timeout):
            await ping(database)
    except Exception as exc:  # any failure means "not ready"; the reason goes to the log
        logger.warning("readiness check failed: %r", exc)
        return problem_response(503, "The database does not answer.", instance=request.url.path)
    return {"status": "ok", "database": "ok"}
