"""Fixtures of the notes tests: a migrated database per backend, the app and a client."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import argon2
import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from pydantic import SecretStr

import aiodatabases
from notes import Settings, create_app
from notes import migrate as migrate_module
from notes.accounts import AccountsRepository
from notes.auth import Auth
from notes.repository import utc_now
from notes.tables import metadata
from notes.tokens import hash_refresh_token, new_refresh_token

#: The signing secret of test apps (the generated one has its own tests).
TEST_SECRET = "test-secret-" + "x" * 40

#: The password of the users the fixtures create, and its hash (computed once per run).
PASSWORD = "correct horse battery staple"
PASSWORD_HASH = argon2.PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1).hash(PASSWORD)

#: Tables a test run may leave on a server database, dropped before migrating it afresh.
_OURS = (
    "refresh_tokens",
    "auth_sessions",
    "login_failures",
    "note_tags",
    "notes",
    "users",
    "alembic_version",
)


#: Server databases migrated to head in this run (their tables are only emptied between tests).
_MIGRATED: set[str] = set()


def reset_server_database(url: str) -> None:
    """Drop the notes tables (and a stale alembic_version) from a server database."""
    _MIGRATED.discard(url)

    def drop(connection: sa.Connection) -> None:
        present = set(sa.inspect(connection).get_table_names())
        for name in _OURS:
            if name in present:
                connection.execute(sa.text(f"DROP TABLE {name}"))

    migrate_module.run_with_connection(url, drop)


def empty_server_database(url: str) -> None:
    """Delete every row of the notes tables, children first; the schema stays."""

    def empty(connection: sa.Connection) -> None:
        for table in reversed(metadata.sorted_tables):
            connection.execute(table.delete())

    migrate_module.run_with_connection(url, empty)


@pytest.fixture(scope="session")
def migrated_sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head once per run, copied by each test that needs one."""
    path = tmp_path_factory.mktemp("template") / "notes.db"
    migrate_module.upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def drop_migrated_schemas_at_the_end() -> Iterator[None]:
    """Drop the notes schema from every server database migrated in this run, at its end.

    Other test packages create tables of the same names (users, notes) in the same databases:
    a run must leave none behind.
    """
    yield
    for url in list(_MIGRATED):
        reset_server_database(url)


@pytest.fixture
def notes_url(
    database_url: str,
    migrated_sqlite_template: Path,
    tmp_path: Path,
    drop_migrated_schemas_at_the_end: None,
) -> Iterator[str]:
    """A database URL per backend with the notes schema at head and no notes."""
    if database_url.startswith("sqlite"):
        path = tmp_path / "notes.db"
        shutil.copyfile(migrated_sqlite_template, path)
        yield f"sqlite:///{path}"
        return
    # Migrating costs seconds on a server: once per run, then emptied after each test.
    if database_url not in _MIGRATED:
        reset_server_database(database_url)
        migrate_module.upgrade(database_url)
        _MIGRATED.add(database_url)
    try:
        yield database_url
    finally:
        empty_server_database(database_url)


@pytest.fixture
def settings(notes_url: str) -> Settings:
    """Settings of an app on the test database.

    Without the collector's tuning: it makes a full collection at every start, and the tests
    start an app each (test_memory.py runs it).
    """
    return Settings(
        database_url=SecretStr(notes_url), jwt_secret=SecretStr(TEST_SECRET), tune_gc=False
    )


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    """A notes app with its lifespan running (its database connected)."""
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


async def add_user(app: FastAPI, email: str) -> tuple[int, str]:
    """Create a user with PASSWORD straight in the database; return (id, access token)."""
    database: aiodatabases.Database = app.state.database
    auth: Auth = app.state.auth
    accounts = AccountsRepository(database)
    now = utc_now()
    account = await accounts.create_user(email, PASSWORD_HASH, now)
    session_id = await accounts.open_session(
        account.id, hash_refresh_token(new_refresh_token()), now, now + dt.timedelta(days=1)
    )
    return account.id, auth.keys.issue(account.id, session_id, now)


def _client(app: FastAPI, token: str | None = None) -> httpx.AsyncClient:
    """An httpx client talking to the app in-process, with the bearer token if given."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://notes.test", headers=headers
    )


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client talking to the app in-process, logged in as ada@example.org."""
    _, token = await add_user(app, "ada@example.org")
    async with _client(app, token) as http:
        yield http


@pytest.fixture
async def other_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client logged in as another user, grace@example.org."""
    _, token = await add_user(app, "grace@example.org")
    async with _client(app, token) as http:
        yield http


@pytest.fixture
async def anonymous(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client without credentials."""
    async with _client(app) as http:
        yield http


@pytest.fixture
async def database(app: FastAPI) -> aiodatabases.Database:
    """The app's own (connected) database."""
    db: aiodatabases.Database = app.state.database
    return db
