"""Dependencies of the routes: the repository of the request."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from aiodatabases.ext.fastapi import DatabaseDep

from .repository import NotesRepository, utc_now

__all__ = ["Repository", "get_repository"]


def get_repository(request: Request, database: DatabaseDep) -> NotesRepository:
    """Return the notes repository for this request (ownership will scope it here)."""
    clock = getattr(request.app.state, "clock", utc_now)
    return NotesRepository(database, clock=clock)


Repository = Annotated[NotesRepository, Depends(get_repository)]
