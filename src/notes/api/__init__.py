"""The HTTP routes of the service: the JSON API, health checks and offline docs."""

from __future__ import annotations

from .auth import auth_router, users_router
from .docs import install_docs
from .health import router as health_router
from .notes import router as notes_router

__all__ = ["auth_router", "health_router", "install_docs", "notes_router", "users_router"]
