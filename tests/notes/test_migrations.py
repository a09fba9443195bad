"""Alembic migrations: head is exactly the schema the code declares; base leaves nothing."""

from __future__ import annotations

import asyncio
import datetime as dt
import warnings
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from fastapi import FastAPI
from pydantic import SecretStr

import aiodatabases
from notes import Settings, create_app, migrate
from notes.accounts import AccountsRepository
from notes.cli import main
from notes.repository import utc_now
from notes.tables import metadata

from .conftest import add_user, reset_server_database

Snapshot = dict[str, Any]

#: Search structures that Alembic's comparison cannot see (virtual tables, expression or
#: dialect-only indexes, PostgreSQL's generated column); the snapshot comparison covers them.
_SEARCH_OBJECTS = {
    "ix_notes_search",
    "ix_notes_fulltext",
    "ix_notes_fulltext_title",
    "search_vector",
}


@pytest.fixture
def empty_url(database_url: str) -> Iterator[str]:
    """A database URL per backend with none of the notes tables in it."""
    if not database_url.startswith("sqlite"):
        reset_server_database(database_url)
    yield database_url
    if not database_url.startswith("sqlite"):
        reset_server_database(database_url)


def foreign_keys(
    connection: sa.Connection, inspector: sa.Inspector, table: str
) -> list[tuple[Any, ...]]:
    """The foreign keys of a table as (columns, referred table, referred columns, on delete)."""
    if connection.dialect.name == "sqlite":
        # SQLAlchemy does not read ON DELETE of a column added with ALTER TABLE; SQLite does.
        rows = connection.execute(sa.text(f"PRAGMA foreign_key_list({table})")).all()
        return sorted(
            ((row[3],), row[2], (row[4],), None if row[6] == "NO ACTION" else row[6])
            for row in rows
        )
    return sorted(
        (
            tuple(fk["constrained_columns"]),
            fk["referred_table"],
            tuple(fk["referred_columns"]),
            (fk.get("options") or {}).get("ondelete"),
        )
        for fk in inspector.get_foreign_keys(table)
    )


def snapshot(connection: sa.Connection) -> Snapshot:
    """Everything the schema holds, as reflected: tables, columns, keys, indexes, triggers."""
    inspector = sa.inspect(connection)
    tables: Snapshot = {}
    for name in sorted(inspector.get_table_names()):
        if name == "alembic_version":
            continue
        tables[name] = {
            "columns": [
                (column["name"], str(column["type"]), column["nullable"])
                for column in inspector.get_columns(name)
            ],
            "primary_key": inspector.get_pk_constraint(name)["constrained_columns"],
            "foreign_keys": foreign_keys(connection, inspector, name),
            "indexes": sorted(
                (
                    index["name"] or "",
                    repr(index.get("column_names")),
                    repr(index.get("expressions")),
                    bool(index["unique"]),
                )
                for index in inspector.get_indexes(name)
            ),
        }
    result: Snapshot = {"tables": tables}
    if connection.dialect.name == "sqlite":
        result["sqlite_master"] = sorted(
            (row[0], row[1], row[2])
            for row in connection.execute(sa.text("SELECT type, name, tbl_name FROM sqlite_master"))
            if not row[1].startswith("sqlite_autoindex") and row[2] != "alembic_version"
        )
    return result


def declared_snapshot(url: str) -> Snapshot:
    """The snapshot of metadata.create_all() on the (empty) database, which is then emptied."""

    def create_and_look(connection: sa.Connection) -> Snapshot:
        metadata.create_all(connection)
        try:
            return snapshot(connection)
        finally:
            metadata.drop_all(connection)

    return migrate.run_with_connection(url, create_and_look)


def test_upgrade_head_gives_exactly_the_declared_schema(empty_url: str) -> None:
    """alembic upgrade head on an empty database equals metadata.create_all(), search included."""
    declared = declared_snapshot(empty_url)
    migrate.upgrade(empty_url)
    migrated = migrate.run_with_connection(empty_url, snapshot)
    assert migrated == declared
    assert {name for name in migrated["tables"] if not name.startswith("notes_fts")} == {
        "notes",
        "note_tags",
        "users",
        "auth_sessions",
        "refresh_tokens",
        "login_failures",
    }


def test_alembic_finds_no_difference_between_head_and_the_tables(empty_url: str) -> None:
    """Alembic's autogenerate comparison of head against tables.py finds nothing to do."""
    migrate.upgrade(empty_url)

    def include(obj: Any, name: str | None, kind: str, reflected: bool, other: Any) -> bool:
        if kind == "table" and name is not None and name.startswith("notes_fts"):
            return False
        return name not in _SEARCH_OBJECTS

    def compare(connection: sa.Connection) -> list[Any]:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "include_object": include}
        )
        diff: list[Any] = compare_metadata(context, metadata)
        return diff

    with warnings.catch_warnings():
        # SQLite cannot reflect expression indexes; the snapshot test covers them.
        warnings.filterwarnings("ignore", "autogenerate skipping metadata-specified expression")
        assert migrate.run_with_connection(empty_url, compare) == []


def test_downgrade_base_leaves_nothing_behind(empty_url: str) -> None:
    """downgrade base removes every table, index and trigger; only an empty alembic_version."""
    migrate.upgrade(empty_url)
    migrate.downgrade(empty_url, "base")
    left = migrate.run_with_connection(empty_url, snapshot)
    assert left["tables"] == {}
    # Except SQLite's own sqlite_sequence, made by 0005's AUTOINCREMENT tables: SQLite does
    # not let it be dropped, so it must at least be empty.
    internal = [("table", "sqlite_sequence", "sqlite_sequence")]
    assert [row for row in left.get("sqlite_master", []) if row not in internal] == []
    if left.get("sqlite_master"):

        def sequences(connection: sa.Connection) -> int:
            return int(
                connection.execute(sa.text("SELECT count(*) FROM sqlite_sequence")).scalar_one()
            )

        assert migrate.run_with_connection(empty_url, sequences) == 0
    assert migrate.current(empty_url) == ()


def test_current_follows_upgrade_and_downgrade(empty_url: str) -> None:
    """current() is empty, then the head after upgrade, and upgrading twice changes nothing."""
    assert migrate.current(empty_url) == ()
    migrate.upgrade(empty_url)
    migrate.upgrade(empty_url)
    assert migrate.current(empty_url) == (migrate.head(),)
    for below in ("0004", "0003", "0002", "0001"):
        migrate.downgrade(empty_url, "-1")
        assert migrate.current(empty_url) == (below,)
    migrate.downgrade(empty_url, "base")
    assert migrate.current(empty_url) == ()


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("sqlite:///notes.db", "sqlite:///notes.db"),
        ("sqlite+aiosqlite:////tmp/x.db?timeout=3&max_size=4", "sqlite:////tmp/x.db?timeout=3"),
        (
            "sqlite:///file:n?mode=memory&cache=shared&uri=true",
            "sqlite:///file:n?cache=shared&mode=memory&uri=true",
        ),
        ("postgres://u:p@h/db?min_size=1&ssl=true", "postgresql+asyncpg://u:p@h/db?ssl=true"),
        ("postgresql+asyncpg://u@h:5433/db", "postgresql+asyncpg://u@h:5433/db"),
        ("mysql://root@h/db?pool_recycle=5", "mysql+asyncmy://root@h/db"),
        ("mariadb://root@h/db", "mysql+asyncmy://root@h/db"),
    ],
)
def test_service_urls_become_sqlalchemy_urls_alembic_can_use(given: str, expected: str) -> None:
    """Each aiodatabases URL maps to the SQLAlchemy driver Alembic runs on, minus pool options."""
    assert migrate.sqlalchemy_url(given) == sa.make_url(expected)


def test_unsupported_database_cannot_be_migrated() -> None:
    """An unknown scheme is a ValueError naming the supported ones."""
    with pytest.raises(ValueError, match="sqlite://, postgresql:// or mysql://"):
        migrate.sqlalchemy_url("oracle://scott@h/db")


def _insert_note_at_0001(connection: sa.Connection) -> None:
    """Write a note (with a tag) the way the service did before accounts existed."""
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    connection.execute(
        sa.text(
            "INSERT INTO notes (title, body, completed, version, created_at, updated_at) "
            "VALUES (:title, :body, :completed, 1, :now, :now)"
        ),
        {"title": "older than accounts", "body": "legacy quokka", "completed": False, "now": now},
    )
    note_id = connection.execute(sa.text("SELECT MAX(id) FROM notes")).scalar_one()
    connection.execute(
        sa.text("INSERT INTO note_tags (note_id, tag, position) VALUES (:id, 'old', 0)"),
        {"id": note_id},
    )


def _notes_and_owners(connection: sa.Connection) -> list[tuple[Any, ...]]:
    rows = connection.execute(sa.text("SELECT title, body, owner_id FROM notes")).all()
    return [tuple(row) for row in rows]


async def _search_as(app: FastAPI, email: str, query: str) -> list[str]:
    _, token = await add_user(app, email)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://t", headers={"Authorization": f"Bearer {token}"}
    ) as http:
        listing = await http.get("/api/notes", params={"q": query})
        assert listing.status_code == 200
        return [item["title"] for item in listing.json()["items"]]


async def test_notes_older_than_accounts_are_kept_hidden_until_adopted(
    empty_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Upgrading keeps old notes with no owner; nobody sees them; `notes db adopt` gives them."""
    await asyncio.to_thread(migrate.upgrade, empty_url, "0001")
    await asyncio.to_thread(migrate.run_with_connection, empty_url, _insert_note_at_0001)
    await asyncio.to_thread(migrate.upgrade, empty_url)
    rows = await asyncio.to_thread(migrate.run_with_connection, empty_url, _notes_and_owners)
    assert rows == [("older than accounts", "legacy quokka", None)]

    settings = Settings(database_url=SecretStr(empty_url), jwt_secret=SecretStr("k" * 40))
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        assert await _search_as(app, "first@example.org", "quokka") == []
        monkeypatch.setenv("NOTES_DATABASE_URL", empty_url)
        code = await asyncio.to_thread(main, ["db", "adopt", "First@Example.org"])
        assert code == 0
        assert "1 note(s) now belong to first@example.org" in capsys.readouterr().out
        transport = httpx.ASGITransport(app=app)
        database: aiodatabases.Database = app.state.database
        owner = await database.fetch_val(
            sa.text("SELECT id FROM users WHERE email = 'first@example.org'")
        )
        session = await AccountsRepository(database).open_session(
            owner, "h" * 64, utc_now(), utc_now() + dt.timedelta(days=1)
        )
        token = app.state.auth.keys.issue(owner, session, utc_now())
        async with httpx.AsyncClient(
            transport=transport, base_url="http://t", headers={"Authorization": f"Bearer {token}"}
        ) as http:
            found = (await http.get("/api/notes", params={"q": "quokka"})).json()["items"]
            assert [(note["title"], note["tags"]) for note in found] == [
                ("older than accounts", ["old"])
            ]
        assert await _search_as(app, "second@example.org", "quokka") == []


def test_downgrading_ownership_keeps_every_note_and_search(empty_url: str) -> None:
    """downgrade 0001 drops accounts, keeps notes and tags, and search keeps following writes."""
    migrate.upgrade(empty_url, "0001")
    migrate.run_with_connection(empty_url, _insert_note_at_0001)
    migrate.upgrade(empty_url)
    migrate.downgrade(empty_url, "0001")
    migrate.run_with_connection(empty_url, _insert_note_at_0001)

    def look(connection: sa.Connection) -> tuple[list[Any], int]:
        titles = connection.execute(sa.text("SELECT title FROM notes")).scalars().all()
        tags = connection.execute(sa.text("SELECT COUNT(*) FROM note_tags")).scalar_one()
        return list(titles), tags

    assert migrate.run_with_connection(empty_url, look) == (["older than accounts"] * 2, 2)
    if empty_url.startswith("sqlite"):

        def search(connection: sa.Connection) -> int:
            query = "SELECT COUNT(*) FROM notes_fts WHERE notes_fts MATCH 'quokka'"
            return int(connection.execute(sa.text(query)).scalar_one())

        assert migrate.run_with_connection(empty_url, search) == 2


def test_postgresql_search_vector_covers_notes_older_than_the_column(empty_url: str) -> None:
    """The column is computed for existing notes, follows writes, and 0002 finds them again."""
    if not empty_url.startswith("postgresql"):
        pytest.skip("the stored search vector exists on PostgreSQL only")
    migrate.upgrade(empty_url, "0001")
    migrate.run_with_connection(empty_url, _insert_note_at_0001)
    migrate.upgrade(empty_url)

    def matches(column: str, word: str) -> Any:
        def run(connection: sa.Connection) -> list[str]:
            query = f"SELECT title FROM notes WHERE {column} @@ plainto_tsquery('simple', :word)"
            return list(connection.execute(sa.text(query), {"word": word}).scalars())

        return run

    assert migrate.run_with_connection(empty_url, matches("search_vector", "quokka")) == [
        "older than accounts"
    ]

    def rewrite(connection: sa.Connection) -> None:
        connection.execute(sa.text("UPDATE notes SET body = 'platypus'"))

    migrate.run_with_connection(empty_url, rewrite)
    assert migrate.run_with_connection(empty_url, matches("search_vector", "quokka")) == []
    assert migrate.run_with_connection(empty_url, matches("search_vector", "platypus")) == [
        "older than accounts"
    ]
    migrate.downgrade(empty_url, "0002")
    expression = (
        "(setweight(to_tsvector('simple'::regconfig, title), 'A') || "
        "setweight(to_tsvector('simple'::regconfig, body), 'B'))"
    )
    assert migrate.run_with_connection(empty_url, matches(expression, "platypus")) == [
        "older than accounts"
    ]


def test_migrating_to_the_queue_and_back_loses_no_note_from_search(empty_url: str) -> None:
    """0003's per-note index carries over to the queue; going back indexes what is queued."""
    if not empty_url.startswith("sqlite"):
        pytest.skip("the search queue exists on SQLite only")
    insert = sa.text(
        "INSERT INTO notes (title, body, completed, version, created_at, updated_at) "
        "VALUES (:title, 'x', 0, 1, '2026-11-30', '2026-11-30')"
    )

    def add(title: str) -> None:
        def run(connection: sa.Connection) -> None:
            connection.execute(insert, {"title": title})

        migrate.run_with_connection(empty_url, run)

    def found(word: str) -> int:
        def run(connection: sa.Connection) -> int:
            query = sa.text("SELECT COUNT(*) FROM notes_fts WHERE notes_fts MATCH :q")
            return int(connection.execute(query, {"q": word}).scalar_one())

        return migrate.run_with_connection(empty_url, run)

    migrate.upgrade(empty_url, "0003")
    add("dune before")
    assert found("dune") == 1
    migrate.upgrade(empty_url)
    add("dune queued")
    assert found("dune") == 1  # the new one waits in the queue
    migrate.downgrade(empty_url, "0003")
    assert found("dune") == 2
    add("dune after")
    assert found("dune") == 3  # 0001's triggers index as they write again


def test_sqlite_ids_stop_being_reused_and_the_rebuild_keeps_everything(empty_url: str) -> None:
    """0005 rebuilds users, notes and sessions with AUTOINCREMENT: rows, tags, indexes and the
    search triggers survive, and the newest note's id, once deleted, is not given again;
    downgrading rebuilds them as before with every row."""
    if not empty_url.startswith("sqlite"):
        pytest.skip("PostgreSQL and MariaDB never reuse ids; 0005 changes SQLite only")

    def run(sql: str, **values: Any) -> Any:
        def call(connection: sa.Connection) -> Any:
            result = connection.execute(sa.text(sql), values)
            return result.fetchall() if result.returns_rows else None

        return migrate.run_with_connection(empty_url, call)

    def add_note(title: str) -> int:
        run(
            "INSERT INTO notes (title, body, completed, version, created_at, updated_at, "
            "owner_id) VALUES (:title, 'x', 0, 1, '2026-11-30', '2026-11-30', 1)",
            title=title,
        )
        return int(run("SELECT max(id) FROM notes")[0][0])

    migrate.upgrade(empty_url, "0004")
    run("INSERT INTO users (email, password_hash, created_at) VALUES ('a@x.org', 'h', '2026')")
    first, second = add_note("dune one"), add_note("dune two")
    run("INSERT INTO note_tags (note_id, tag, position) VALUES (:id, 'sand', 0)", id=second)
    run("DELETE FROM notes WHERE id = :id", id=second)
    assert add_note("dune reused") == second  # 0004: the largest id is handed out again
    indexes_before = run("SELECT name FROM sqlite_master WHERE type IN ('index', 'trigger')")

    migrate.upgrade(empty_url, "0005")
    assert run("SELECT id, title FROM notes ORDER BY id") == [
        (first, "dune one"),
        (second, "dune reused"),
    ]
    assert sorted(run("SELECT name FROM sqlite_master WHERE type IN ('index', 'trigger')")) == (
        sorted(indexes_before)
    )
    run("DELETE FROM notes WHERE id = :id", id=second)
    assert add_note("dune new") == second + 1
    run("INSERT INTO notes_fts(notes_fts) VALUES ('rebuild')")
    assert run("SELECT count(*) FROM notes_fts WHERE notes_fts MATCH 'dune'") == [(2,)]

    migrate.downgrade(empty_url, "0004")
    assert [title for _, title in run("SELECT id, title FROM notes ORDER BY id")] == [
        "dune one",
        "dune new",
    ]
    assert "AUTOINCREMENT" not in run("SELECT sql FROM sqlite_master WHERE name = 'notes'")[0][0]


def test_the_id_migration_refuses_to_run_with_foreign_keys_enforced(empty_url: str) -> None:
    """Rebuilding a parent table with foreign keys on would cascade-delete its children: 0005
    stops with a clear error instead, and nothing is lost."""
    if not empty_url.startswith("sqlite"):
        pytest.skip("SQLite only")
    migrate.upgrade(empty_url, "0004")

    def upgrade_with_foreign_keys(connection: sa.Connection) -> None:
        connection.exec_driver_sql("PRAGMA foreign_keys = ON")
        command.upgrade(migrate.alembic_config(connection), "0005")

    with pytest.raises(RuntimeError, match="foreign keys"):
        migrate.run_with_connection(empty_url, upgrade_with_foreign_keys)
    assert migrate.current(empty_url) == ("0004",)
