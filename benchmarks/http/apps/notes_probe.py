"""The notes service as ``notes.app:create_app`` builds it, plus one read-only probe route.

``GET /_probe/pool`` answers the pool counts of the service's database (open, idle, checked
out, maximum), so the held load can check from outside that no connection is left checked
out. ``GET /_probe/memory`` answers the process's live memory as its allocators count it:
SQLite's bytes in use and their peak since the last call (``sqlite3_memory_used`` and
``sqlite3_memory_highwater``, read with ctypes from the library the ``sqlite3`` module links)
and Python's allocated blocks, so that a growing RSS can be told apart from growing data.
Nothing else differs from the service: same settings (``NOTES_*``), same routes.
"""

from __future__ import annotations

import ctypes
import dataclasses
import sys
from typing import Any

from fastapi import FastAPI, Request

from notes import create_app as create_notes_app


def _sqlite_counters() -> tuple[Any, Any] | None:
    """``sqlite3_memory_used`` and ``sqlite3_memory_highwater`` of the linked SQLite, or None."""
    try:
        import _sqlite3

        library = ctypes.CDLL(_sqlite3.__file__)
        used, highwater = library.sqlite3_memory_used, library.sqlite3_memory_highwater
    except (ImportError, OSError, AttributeError):
        return None
    used.restype = highwater.restype = ctypes.c_int64
    used.argtypes = []
    highwater.argtypes = [ctypes.c_int]
    return used, highwater


def create_app() -> FastAPI:
    """Build the notes app and add ``GET /_probe/pool`` and ``GET /_probe/memory``."""
    app = create_notes_app()
    counters = _sqlite_counters()

    @app.get("/_probe/pool", include_in_schema=False)
    async def pool(request: Request) -> dict[str, Any]:
        return dataclasses.asdict(request.app.state.database.pool_stats())

    @app.get("/_probe/memory", include_in_schema=False)
    async def memory() -> dict[str, Any]:
        answer: dict[str, Any] = {"python_blocks": sys.getallocatedblocks()}
        if counters is not None:
            used, highwater = counters
            answer |= {"sqlite_bytes": used(), "sqlite_peak_bytes": highwater(1)}
        return answer

    return app
