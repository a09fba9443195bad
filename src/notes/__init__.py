"""notes: a small notes service on FastAPI and aiodatabases.

``create_app(Settings())`` builds the ASGI application; ``notes serve`` runs it.
"""

from __future__ import annotations

from .app import create_app
from .settings import Settings

__all__ = ["Settings", "create_app"]
