"""SQLAlchemy Core tables of every backend's workloads (needs SQLAlchemy).

They match :data:`benchlib.common.SQLITE_DDL` and the DDL of the PostgreSQL and MariaDB
packages: ``items``, ``events`` and ``bulk`` share one five-column shape.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()


def _table(name: str) -> sa.Table:
    """Build one of the three identically shaped benchmark tables."""
    return sa.Table(
        name,
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("score", sa.Float, nullable=False),
    )


items = _table("items")
events = _table("events")
bulk = _table("bulk")
