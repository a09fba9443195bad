"""SQLAlchemy Core tables of the SQLite workloads (shared: :mod:`benchlib.core_schema`)."""

from __future__ import annotations

from ..core_schema import bulk, events, items, metadata

__all__ = ["bulk", "events", "items", "metadata"]
