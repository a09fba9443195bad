"""PostgreSQL search reads a stored tsvector column instead of an expression index.

With the GIN index on the expression, ``ts_rank`` recomputed the document of every match,
and a plan that reached notes by another index recomputed it for every row it looked at.
The stored generated column ``notes.search_vector`` is computed once per write; the GIN index
moves onto it. Adding the column rewrites the table (under an exclusive lock) to compute it
for every note. SQLite and MySQL/MariaDB are not changed.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copy of the document 0001 indexed: a migration must not change when tables.py does.
_PG_SEARCH = (
    "(setweight(to_tsvector('simple'::regconfig, title), 'A') || "
    "setweight(to_tsvector('simple'::regconfig, body), 'B'))"
)


def _is_postgresql() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    """Add notes.search_vector (stored, generated) and move the GIN index onto it."""
    if not _is_postgresql():
        return
    op.drop_index("ix_notes_search", table_name="notes")
    op.add_column(
        "notes",
        sa.Column("search_vector", postgresql.TSVECTOR(), sa.Computed(_PG_SEARCH, persisted=True)),
    )
    op.create_index("ix_notes_search", "notes", ["search_vector"], postgresql_using="gin")


def downgrade() -> None:
    """Drop the column and its index; index the expression again, as 0001 did."""
    if not _is_postgresql():
        return
    op.drop_index("ix_notes_search", table_name="notes")
    op.drop_column("notes", "search_vector")
    op.create_index("ix_notes_search", "notes", [sa.text(_PG_SEARCH)], postgresql_using="gin")
