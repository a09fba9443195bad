"""SQLite indexes new and changed notes for search in batches, through a queue.

FTS5 writes a new index segment at every commit that touches it, so indexing each note in the
commit that stores it cost more than the rest of the ``INSERT`` (its four indexes included).
The triggers now queue a new or changed note in ``notes_fts_pending``; the service indexes the
queue in batches, in the background and before every search (``notes.search_index``). A note
that changes or goes leaves the index at once, as before. PostgreSQL and MySQL/MariaDB are not
changed.

Downgrading indexes every queued note first, so the index is complete when the per-note
triggers come back.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies: a migration must not change when tables.py does.
_TRIGGER_NAMES = ("notes_fts_after_insert", "notes_fts_after_delete", "notes_fts_after_update")
_QUEUED = "EXISTS (SELECT 1 FROM notes_fts_pending WHERE note_id = old.id)"
_QUEUE_TRIGGERS = (
    "CREATE TRIGGER notes_fts_after_insert AFTER INSERT ON notes BEGIN "
    "INSERT OR IGNORE INTO notes_fts_pending(note_id) VALUES (new.id); END",
    "CREATE TRIGGER notes_fts_after_delete AFTER DELETE ON notes BEGIN "
    "INSERT INTO notes_fts(notes_fts, rowid, title, body) "
    f"SELECT 'delete', old.id, old.title, old.body WHERE NOT {_QUEUED}; "
    "DELETE FROM notes_fts_pending WHERE note_id = old.id; END",
    "CREATE TRIGGER notes_fts_after_update AFTER UPDATE OF id, title, body ON notes BEGIN "
    "INSERT INTO notes_fts(notes_fts, rowid, title, body) "
    f"SELECT 'delete', old.id, old.title, old.body WHERE NOT {_QUEUED}; "
    "DELETE FROM notes_fts_pending WHERE note_id = old.id; "
    "INSERT OR IGNORE INTO notes_fts_pending(note_id) VALUES (new.id); END",
)
# 0001's triggers: every note indexed in the commit that writes it.
_PER_NOTE_TRIGGERS = (
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


def _is_sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def upgrade() -> None:
    """Create the queue and put the queueing triggers in place of the per-note ones."""
    if not _is_sqlite():
        return
    op.execute("CREATE TABLE notes_fts_pending (note_id INTEGER NOT NULL PRIMARY KEY)")
    for name in _TRIGGER_NAMES:
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
    for statement in _QUEUE_TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    """Index what is queued, then go back to indexing each note as it is written."""
    if not _is_sqlite():
        return
    op.execute(
        "INSERT INTO notes_fts(rowid, title, body) SELECT notes.id, notes.title, notes.body "
        "FROM notes_fts_pending JOIN notes ON notes.id = notes_fts_pending.note_id"
    )
    for name in _TRIGGER_NAMES:
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
    op.execute("DROP TABLE notes_fts_pending")
    for statement in _PER_NOTE_TRIGGERS:
        op.execute(statement)
