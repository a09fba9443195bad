"""The tables of the notes service (SQLAlchemy Core), in one MetaData.

Migrations in ``notes/migrations`` create exactly this schema. Search structures depend on the
backend and are declared here too, so that ``metadata.create_all()`` builds them as well:

- SQLite: an FTS5 table ``notes_fts`` with external content (the ``notes`` table). Triggers
  take a note out of it when it changes or goes, and queue a new or changed note in
  ``notes_fts_pending``; ``notes.search_index`` indexes the queue in batches (FTS5 writes a
  segment per commit, so indexing one note per commit cost more than the rest of its
  ``INSERT``), and always before a search, which therefore sees every committed note;
- PostgreSQL: a stored generated column ``notes.search_vector``, the weighted ``tsvector`` of
  title and body (``simple``), with a GIN index; it is added by DDL after the table is created
  (``PG_SEARCH_DDL``), since SQLAlchemy cannot declare a column for one dialect only;
- MySQL/MariaDB: FULLTEXT indexes on ``(title, body)`` and on ``(title)``.

Notes belong to users through ``notes.owner_id``. It is nullable only for notes written before
accounts existed: those belong to nobody and nobody sees them until ``notes db adopt EMAIL``
gives them an owner. Sessions (``auth_sessions``) are refresh-token families;
``refresh_tokens`` keeps the SHA-256 of each refresh token, never the token.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql

__all__ = [
    "PG_SEARCH_DDL",
    "SQLITE_SEARCH_DDL",
    "auth_sessions",
    "login_failures",
    "metadata",
    "note_tags",
    "notes",
    "notes_fts",
    "refresh_tokens",
    "search_vector",
    "users",
]

#: The text-search configuration of PostgreSQL: no stemming, no stop words, lower case.
PG_SEARCH_CONFIG = "simple"

#: PostgreSQL's document of a note: title words weigh A, body words B (ts_rank: 1.0, 0.4).
PG_SEARCH_VECTOR = (
    f"(setweight(to_tsvector('{PG_SEARCH_CONFIG}'::regconfig, title), 'A') || "
    f"setweight(to_tsvector('{PG_SEARCH_CONFIG}'::regconfig, body), 'B'))"
)

#: PostgreSQL's search schema: the document stored with each note, and its GIN index.
#: Stored, it is computed once per write instead of once per row a query looks at: both
#: ``@@`` and ``ts_rank`` read it, and ANALYZE keeps statistics of its words for the planner.
PG_SEARCH_DDL: tuple[str, ...] = (
    "ALTER TABLE notes ADD COLUMN search_vector tsvector "
    f"GENERATED ALWAYS AS {PG_SEARCH_VECTOR} STORED",
    "CREATE INDEX ix_notes_search ON notes USING gin (search_vector)",
)

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

_Timestamp = sa.DateTime(timezone=True).with_variant(
    mysql.DATETIME(timezone=True, fsp=6), "mysql", "mariadb"
)
_Body = sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")
_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# Compared byte for byte: MySQL's default collations would make "a@x.org" and "á@X.org" one.
_Email = sa.String(254).with_variant(
    mysql.VARCHAR(254, charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb"
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", _Id, primary_key=True, autoincrement=True),
    # Lower-cased; 254 is the longest address SMTP carries.
    sa.Column("email", _Email, nullable=False, unique=True),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("created_at", _Timestamp, nullable=False),
    sqlite_autoincrement=True,
)

notes = sa.Table(
    "notes",
    metadata,
    sa.Column("id", _Id, primary_key=True, autoincrement=True),
    sa.Column("title", sa.String(200), nullable=False),
    sa.Column("body", _Body, nullable=False),
    sa.Column("completed", sa.Boolean(create_constraint=False), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", _Timestamp, nullable=False),
    sa.Column("updated_at", _Timestamp, nullable=False),
    # Last, where the migration that brought accounts added it. On PostgreSQL, PG_SEARCH_DDL
    # adds search_vector after it.
    sa.Column("owner_id", _Id, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=True),
    sqlite_autoincrement=True,
)
# Every listing is one owner's: the keyset orders lead with the owner.
sa.Index(None, notes.c.owner_id, notes.c.created_at, notes.c.id)
sa.Index(None, notes.c.owner_id, notes.c.updated_at, notes.c.id)
sa.Index(None, notes.c.owner_id, notes.c.title, notes.c.id)
sa.Index(None, notes.c.owner_id, notes.c.completed, notes.c.id)

note_tags = sa.Table(
    "note_tags",
    metadata,
    sa.Column(
        "note_id",
        _Id,
        sa.ForeignKey("notes.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("tag", sa.String(50), primary_key=True),
    sa.Column("position", sa.Integer, nullable=False),
)
sa.Index(None, note_tags.c.tag, note_tags.c.note_id)

#: A login session: the family of refresh tokens that rotate from one login.
auth_sessions = sa.Table(
    "auth_sessions",
    metadata,
    sa.Column("id", _Id, primary_key=True, autoincrement=True),
    sa.Column(
        "user_id", _Id, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    ),
    sa.Column("created_at", _Timestamp, nullable=False),
    sa.Column("revoked_at", _Timestamp, nullable=True),
    sqlite_autoincrement=True,
)

#: Refresh tokens by their SHA-256 (hex); a used one that comes back revokes its session.
refresh_tokens = sa.Table(
    "refresh_tokens",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column(
        "session_id",
        _Id,
        sa.ForeignKey("auth_sessions.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("expires_at", _Timestamp, nullable=False),
    sa.Column("used_at", _Timestamp, nullable=True),
)

#: Failed logins per account name (the SHA-256 of the lower-cased email, known or not).
login_failures = sa.Table(
    "login_failures",
    metadata,
    sa.Column("email_hash", sa.String(64), primary_key=True),
    sa.Column("failures", sa.Integer, nullable=False),
    sa.Column("window_started_at", _Timestamp, nullable=False),
)


def search_vector(table: sa.Table = notes) -> sa.ColumnElement[object]:
    """PostgreSQL's stored, weighted tsvector of a note (the column the GIN index is on)."""
    # Not a Column of the Table: it exists on PostgreSQL only (see PG_SEARCH_DDL).
    return sa.literal_column(f"{table.name}.search_vector", type_=postgresql.TSVECTOR())


# MySQL/MariaDB: (title, body) finds notes; (title) alone weighs title hits in the ranking.
# SQLAlchemy checks a tuple of dialect names at run time; its stubs only admit one.
sa.Index("ix_notes_fulltext", notes.c.title, notes.c.body, mysql_prefix="FULLTEXT").ddl_if(
    dialect=("mysql", "mariadb"),  # type: ignore[arg-type]
)
sa.Index("ix_notes_fulltext_title", notes.c.title, mysql_prefix="FULLTEXT").ddl_if(
    dialect=("mysql", "mariadb"),  # type: ignore[arg-type]
)

#: The FTS5 table of SQLite, as seen by queries (it is created by SQLITE_SEARCH_DDL).
notes_fts = sa.table(
    "notes_fts",
    sa.column("rowid", sa.Integer),
    sa.column("title", sa.String),
    sa.column("body", sa.String),
)

#: True when note ``old.id`` is not in ``notes_fts`` (it waits in ``notes_fts_pending``).
_SQLITE_QUEUED = "EXISTS (SELECT 1 FROM notes_fts_pending WHERE note_id = old.id)"

#: SQLite's search schema: an external-content FTS5 table, the queue of notes not yet in it,
#: and the triggers that keep both right. A note is either in the queue or indexed with its
#: current title and body; the indexer moves queued notes into the index. A changed note
#: leaves the index at once (FTS5 must be told the exact words it indexed) and is queued.
#: ``remove_diacritics 2`` makes "cafe" find "café"; the query side folds the same way.
SQLITE_SEARCH_DDL: tuple[str, ...] = (
    "CREATE VIRTUAL TABLE notes_fts USING fts5(title, body, content='notes', "
    "content_rowid='id', tokenize='unicode61 remove_diacritics 2')",
    "CREATE TABLE notes_fts_pending (note_id INTEGER NOT NULL PRIMARY KEY)",
    "CREATE TRIGGER notes_fts_after_insert AFTER INSERT ON notes BEGIN "
    "INSERT OR IGNORE INTO notes_fts_pending(note_id) VALUES (new.id); END",
    "CREATE TRIGGER notes_fts_after_delete AFTER DELETE ON notes BEGIN "
    "INSERT INTO notes_fts(notes_fts, rowid, title, body) "
    f"SELECT 'delete', old.id, old.title, old.body WHERE NOT {_SQLITE_QUEUED}; "
    "DELETE FROM notes_fts_pending WHERE note_id = old.id; END",
    "CREATE TRIGGER notes_fts_after_update AFTER UPDATE OF id, title, body ON notes BEGIN "
    "INSERT INTO notes_fts(notes_fts, rowid, title, body) "
    f"SELECT 'delete', old.id, old.title, old.body WHERE NOT {_SQLITE_QUEUED}; "
    "DELETE FROM notes_fts_pending WHERE note_id = old.id; "
    "INSERT OR IGNORE INTO notes_fts_pending(note_id) VALUES (new.id); END",
)

#: What undoes SQLITE_SEARCH_DDL, in order.
SQLITE_SEARCH_DROP: tuple[str, ...] = (
    "DROP TRIGGER IF EXISTS notes_fts_after_update",
    "DROP TRIGGER IF EXISTS notes_fts_after_delete",
    "DROP TRIGGER IF EXISTS notes_fts_after_insert",
    "DROP TABLE IF EXISTS notes_fts_pending",
    "DROP TABLE IF EXISTS notes_fts",
)


def _dialect_ddl(statement: str, dialect: str) -> sa.schema.ExecutableDDLElement:
    ddl = sa.DDL(statement)  # type: ignore[no-untyped-call]  # DDL.__init__ lacks annotations
    return ddl.execute_if(dialect=dialect)


for _statement in SQLITE_SEARCH_DDL:
    sa.event.listen(notes, "after_create", _dialect_ddl(_statement, "sqlite"))
for _statement in SQLITE_SEARCH_DROP:
    sa.event.listen(notes, "before_drop", _dialect_ddl(_statement, "sqlite"))
# The column and its index go with the table when it is dropped.
for _statement in PG_SEARCH_DDL:
    sa.event.listen(notes, "after_create", _dialect_ddl(_statement, "postgresql"))
