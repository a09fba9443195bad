"""SQLite never gives a deleted row's id to a new one: users, notes and sessions AUTOINCREMENT.

Without ``AUTOINCREMENT`` SQLite numbers a new row one above the largest id in the table, so
deleting the newest note and creating another gave the new note the old one's id: a link or
an ``ETag`` (``"<id>.<version>"``) kept from the deleted note then named the new one, and its
first version matched the old ETag's. Sessions and users too: a token names both by id. With
``AUTOINCREMENT`` SQLite keeps the largest id ever given in ``sqlite_sequence`` and never goes
below it. PostgreSQL's identities and InnoDB's ``AUTO_INCREMENT`` never reuse ids already;
they are not changed.

SQLite cannot add ``AUTOINCREMENT`` to a table: the three tables are rebuilt (copied), their
indexes with them, and the note triggers of the search queue (0004) are put back. Dropping a
table with foreign keys enforced would delete the rows that refer to it, so the migration
refuses to run with ``PRAGMA foreign_keys`` on (``notes db upgrade`` runs with it off).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = ("users", "notes", "auth_sessions")

# Frozen copies of 0004's triggers: a table rebuilt by batch mode loses its triggers.
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


def _rebuild(autoincrement: bool) -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    if bind.exec_driver_sql("PRAGMA foreign_keys").scalar():
        raise RuntimeError(
            "migration 0005 rebuilds tables, and with foreign keys enforced that would delete "
            "the rows referring to them; run it with PRAGMA foreign_keys off "
            "(as `notes db upgrade` does)"
        )
    for name in _TRIGGER_NAMES:
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
    for table in _TABLES:
        with op.batch_alter_table(
            table, recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
        ):
            pass
    for statement in _QUEUE_TRIGGERS:
        op.execute(statement)
    if not autoincrement:
        # sqlite_sequence itself cannot be dropped; the counters of these tables go.
        names = ", ".join(f"'{table}'" for table in _TABLES)
        op.execute(f"DELETE FROM sqlite_sequence WHERE name IN ({names})")


def upgrade() -> None:
    """Rebuild users, notes and auth_sessions with AUTOINCREMENT ids (SQLite only)."""
    _rebuild(autoincrement=True)


def downgrade() -> None:
    """Rebuild them with plain rowid ids again (SQLite only)."""
    _rebuild(autoincrement=False)
