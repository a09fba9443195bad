"""Notes and their tags, with full-text search.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIMESTAMP = sa.DateTime(timezone=True).with_variant(
    mysql.DATETIME(timezone=True, fsp=6), "mysql", "mariadb"
)
_BODY = sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# Frozen copies: a migration must not change when tables.py does.
_SQLITE_SEARCH = (
    "CREATE VIRTUAL TABLE notes_fts USING fts5(title, body, content='notes', "
    "content_rowid='id', tokenize='unicode61 remove_diacritics 2')",
    "CREATE TRIGGER notes_fts_after_insert AFTER INSERT ON notes BEGIN "
    "INSERT INTO notes_fts(rowid, title, body) VALUES (new.id, new.title, new.body); END",
    "CREATE TRIGGER notes_fts_after_delete AFTER DELETE ON notes BEGIN "
    "INSERT INTO notes_fts(notes_fts, rowid, title, body) "
    "VALUES ('delete', old.id, old.title, old.body); END",
    "CREATE TRIGGER notes_fts_after_update AFTER UPDATE OF title, body ON notes BEGIN "
    "INSERT INTO notes_fts(notes_fts, rowid, title, body) "
    "VALUES ('delete', old.id, old.title, old.body); "
    "INSERT INTO notes_fts(rowid, title, body) VALUES (new.id, new.title, new.body); END",
)
_SQLITE_SEARCH_DROP = (
    "DROP TRIGGER IF EXISTS notes_fts_after_update",
    "DROP TRIGGER IF EXISTS notes_fts_after_delete",
    "DROP TRIGGER IF EXISTS notes_fts_after_insert",
    "DROP TABLE IF EXISTS notes_fts",
)
_PG_SEARCH = (
    "(setweight(to_tsvector('simple'::regconfig, title), 'A') || "
    "setweight(to_tsvector('simple'::regconfig, body), 'B'))"
)


def _family() -> str:
    name = op.get_bind().dialect.name
    return "mysql" if name in {"mysql", "mariadb"} else name


def upgrade() -> None:
    """Create notes, note_tags, their indexes and the search structure of the backend."""
    op.create_table(
        "notes",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("body", _BODY, nullable=False),
        sa.Column("completed", sa.Boolean(create_constraint=False), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created_at", _TIMESTAMP, nullable=False),
        sa.Column("updated_at", _TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_notes"),
    )
    op.create_index("ix_notes_created_at_id", "notes", ["created_at", "id"])
    op.create_index("ix_notes_updated_at_id", "notes", ["updated_at", "id"])
    op.create_index("ix_notes_title_id", "notes", ["title", "id"])
    op.create_index("ix_notes_completed_id", "notes", ["completed", "id"])
    op.create_table(
        "note_tags",
        sa.Column("note_id", _ID, nullable=False),
        sa.Column("tag", sa.String(50), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("note_id", "tag", name="pk_note_tags"),
        sa.ForeignKeyConstraint(
            ["note_id"], ["notes.id"], name="fk_note_tags_note_id_notes", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_note_tags_tag_note_id", "note_tags", ["tag", "note_id"])

    family = _family()
    if family == "sqlite":
        for statement in _SQLITE_SEARCH:
            op.execute(statement)
    elif family == "postgresql":
        op.create_index("ix_notes_search", "notes", [sa.text(_PG_SEARCH)], postgresql_using="gin")
    elif family == "mysql":
        op.create_index("ix_notes_fulltext", "notes", ["title", "body"], mysql_prefix="FULLTEXT")
        op.create_index("ix_notes_fulltext_title", "notes", ["title"], mysql_prefix="FULLTEXT")


def downgrade() -> None:
    """Drop everything upgrade() created."""
    family = _family()
    if family == "sqlite":
        for statement in _SQLITE_SEARCH_DROP:
            op.execute(statement)
    elif family == "postgresql":
        op.drop_index("ix_notes_search", table_name="notes")
    elif family == "mysql":
        op.drop_index("ix_notes_fulltext_title", table_name="notes")
        op.drop_index("ix_notes_fulltext", table_name="notes")
    op.drop_index("ix_note_tags_tag_note_id", table_name="note_tags")
    op.drop_table("note_tags")
    for name in ("completed", "title", "updated_at", "created_at"):
        op.drop_index(f"ix_notes_{name}_id", table_name="notes")
    op.drop_table("notes")
