"""Run the Alembic migrations of ``notes/migrations`` against an aiodatabases URL.

Alembic works on SQLAlchemy connections, so the service's URL is turned into a SQLAlchemy
one: SQLite through the standard library driver (a sync engine), PostgreSQL through
``postgresql+asyncpg`` and MySQL/MariaDB through ``mysql+asyncmy`` (async engines; Alembic
runs on them with ``run_sync``). Options that only aiodatabases knows (pool sizes and the
like) are left out. These functions block: call them outside a running event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TypeVar

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import create_async_engine

__all__ = [
    "alembic_config",
    "current",
    "downgrade",
    "head",
    "run_with_connection",
    "sqlalchemy_url",
    "upgrade",
]

T = TypeVar("T")

logger = logging.getLogger("notes.migrate")

#: Where the migration scripts live, as a package resource (works from any directory).
SCRIPT_LOCATION = "notes:migrations"

# Query options passed on to the SQLAlchemy driver; aiodatabases' own options are dropped.
_KEPT_OPTIONS = {
    "sqlite": {"timeout"},
    "postgresql": {"ssl", "sslmode", "command_timeout"},
    "mysql": {"unix_socket", "charset", "ssl"},
}
_DRIVERS = {"sqlite": "sqlite", "postgresql": "postgresql+asyncpg", "mysql": "mysql+asyncmy"}
_FAMILIES = {
    "sqlite": "sqlite",
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "mysql": "mysql",
    "mariadb": "mysql",
}


def sqlalchemy_url(url: str) -> sa.URL:
    """Return the SQLAlchemy URL Alembic uses for an aiodatabases URL.

    Raises:
        ValueError: The URL's database is not one the service supports.
    """
    parsed = sa.make_url(url)
    dialect = parsed.drivername.split("+", 1)[0]
    family = _FAMILIES.get(dialect)
    if family is None:
        raise ValueError(
            f"cannot migrate {parsed.drivername}:// databases; "
            "use sqlite://, postgresql:// or mysql://"
        )
    query = dict(parsed.query)
    if family == "sqlite" and str(query.get("uri", "")).lower() in {"1", "true", "yes", "on"}:
        kept = dict(query)  # a SQLite URI: its options (mode, cache...) belong to SQLite
    else:
        kept = {key: value for key, value in query.items() if key in _KEPT_OPTIONS[family]}
    return parsed.set(drivername=_DRIVERS[family], query=kept)


def run_with_connection(url: str, function: Callable[[sa.Connection], T]) -> T:
    """Open a connection to url, call function with it, commit, close; return its result."""
    target = sqlalchemy_url(url)
    if target.get_dialect().is_async:
        return asyncio.run(_run_async(target, function))
    engine = sa.create_engine(target, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            result = function(connection)
            connection.commit()
            return result
    finally:
        engine.dispose()


async def _run_async(target: sa.URL, function: Callable[[sa.Connection], T]) -> T:
    engine = create_async_engine(target, poolclass=sa.pool.NullPool)
    try:
        async with engine.connect() as connection:
            result = await connection.run_sync(function)
            await connection.commit()
            return result
    finally:
        await engine.dispose()


def alembic_config(connection: sa.Connection | None = None) -> Config:
    """Return an Alembic configuration for the packaged migrations.

    Args:
        connection: The connection env.py migrates; without one, env.py reads
            ``sqlalchemy.url`` or, failing that, ``NOTES_DATABASE_URL``.
    """
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Apply migrations up to revision (default: all)."""

    def run(connection: sa.Connection) -> None:
        command.upgrade(alembic_config(connection), revision)

    run_with_connection(url, run)


def downgrade(url: str, revision: str) -> None:
    """Undo migrations down to revision (``base``: all of them)."""

    def run(connection: sa.Connection) -> None:
        command.downgrade(alembic_config(connection), revision)

    run_with_connection(url, run)


def current(url: str) -> tuple[str, ...]:
    """Return the revisions the database is at (empty when never migrated)."""

    def run(connection: sa.Connection) -> tuple[str, ...]:
        return MigrationContext.configure(connection).get_current_heads()

    return run_with_connection(url, run)


def head() -> str:
    """Return the newest revision of the migration scripts."""
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"the migrations have {len(heads)} heads; merge them")
    return heads[0]
