"""Users, login sessions, refresh tokens, login throttling, and the owner of a note.

Notes written before this migration keep ``owner_id`` NULL: they are kept, nobody sees them
through the API, and ``notes db adopt EMAIL`` gives them to an account.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIMESTAMP = sa.DateTime(timezone=True).with_variant(
    mysql.DATETIME(timezone=True, fsp=6), "mysql", "mariadb"
)
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_EMAIL = sa.String(254).with_variant(
    mysql.VARCHAR(254, charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb"
)

_LISTING_COLUMNS = ("created_at", "updated_at", "title", "completed")

# Frozen copies of 0001's SQLite triggers: a table rebuilt by batch mode loses them.
_SQLITE_TRIGGERS = (
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
_SQLITE_TRIGGER_NAMES = (
    "notes_fts_after_insert",
    "notes_fts_after_delete",
    "notes_fts_after_update",
)


def _is_sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def upgrade() -> None:
    """Create the account tables and give notes a nullable owner."""
    op.create_table(
        "users",
        sa.Column("id", _ID, autoincrement=True),
        sa.Column("email", _EMAIL, nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("created_at", _TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("email", name="uq_users_email"),
    )
    op.create_table(
        "auth_sessions",
        sa.Column("id", _ID, autoincrement=True),
        sa.Column("user_id", _ID, nullable=False),
        sa.Column("created_at", _TIMESTAMP, nullable=False),
        sa.Column("revoked_at", _TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_auth_sessions"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_auth_sessions_user_id_users", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_auth_sessions_user_id", "auth_sessions", ["user_id"])
    op.create_table(
        "refresh_tokens",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("session_id", _ID, nullable=False),
        sa.Column("expires_at", _TIMESTAMP, nullable=False),
        sa.Column("used_at", _TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("token_hash", name="pk_refresh_tokens"),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["auth_sessions.id"],
            name="fk_refresh_tokens_session_id_auth_sessions",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_refresh_tokens_session_id", "refresh_tokens", ["session_id"])
    op.create_table(
        "login_failures",
        sa.Column("email_hash", sa.String(64), nullable=False),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("window_started_at", _TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("email_hash", name="pk_login_failures"),
    )

    for name in _LISTING_COLUMNS:
        op.drop_index(f"ix_notes_{name}_id", table_name="notes")
    if _is_sqlite():
        # A column added in place with ALTER TABLE keeps its ON DELETE where SQLAlchemy's
        # reflection cannot see it; batch mode rebuilds the table with a table-level foreign
        # key instead (rows and ids are copied, so the FTS index stays valid). The rebuild
        # drops the table's triggers: they are put back afterwards.
        for trigger in _SQLITE_TRIGGER_NAMES:
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        with op.batch_alter_table("notes", recreate="always") as batch:
            batch.add_column(sa.Column("owner_id", _ID, nullable=True))
            batch.create_foreign_key(
                "fk_notes_owner_id_users", "users", ["owner_id"], ["id"], ondelete="CASCADE"
            )
        for statement in _SQLITE_TRIGGERS:
            op.execute(statement)
    else:
        op.add_column("notes", sa.Column("owner_id", _ID, nullable=True))
        op.create_foreign_key(
            "fk_notes_owner_id_users", "notes", "users", ["owner_id"], ["id"], ondelete="CASCADE"
        )
    for name in _LISTING_COLUMNS:
        op.create_index(f"ix_notes_owner_id_{name}_id", "notes", ["owner_id", name, "id"])


def downgrade() -> None:
    """Drop ownership and the account tables; every note is kept."""
    if not _is_sqlite():
        # First: MySQL keeps an index that a foreign key needs.
        op.drop_constraint("fk_notes_owner_id_users", "notes", type_="foreignkey")
    for name in _LISTING_COLUMNS:
        op.drop_index(f"ix_notes_owner_id_{name}_id", table_name="notes")
    if _is_sqlite():
        # SQLite cannot drop a column under a foreign key: batch mode rebuilds the table,
        # which drops its triggers; they are put back afterwards.
        for trigger in _SQLITE_TRIGGER_NAMES:
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        with op.batch_alter_table("notes", recreate="always") as batch:
            batch.drop_constraint("fk_notes_owner_id_users", type_="foreignkey")
            batch.drop_column("owner_id")
        for statement in _SQLITE_TRIGGERS:
            op.execute(statement)
    else:
        op.drop_column("notes", "owner_id")
    for name in _LISTING_COLUMNS:
        op.create_index(f"ix_notes_{name}_id", "notes", [name, "id"])
    # A table takes its indexes along (MySQL refuses to drop one a foreign key needs).
    op.drop_table("login_failures")
    op.drop_table("refresh_tokens")
    op.drop_table("auth_sessions")
    op.drop_table("users")
