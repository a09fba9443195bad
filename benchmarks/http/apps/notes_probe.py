"""The notes service as ``notes.app:create_app`` builds it, plus one read-only probe route.

``GET /_probe/pool`` answers the pool counts of the service's database (open, idle, checked
out, maximum), so the held load can check from outside that no connection is left checked
out. Nothing else differs from the service: same settings (``NOTES_*``), same routes.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi import FastAPI, Request

from notes import create_app as create_notes_app


def create_app() -> FastAPI:
    """Build the notes app and add ``GET /_probe/pool``."""
    app = create_notes_app()

    @app.get("/_probe/pool", include_in_schema=False)
    async def pool(request: Request) -> dict[str, Any]:
        return dataclasses.asdict(request.app.state.database.pool_stats())

    return app
