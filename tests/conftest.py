"""Fixtures shared by every test package: which database servers to run against."""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

import aiodatabases

#: The placeholder parameter that stands for "a fresh SQLite file in tmp_path".
SQLITE_FILE = "sqlite-file"

_DEFAULT_PORTS = {"postgresql": 5432, "postgres": 5432, "mysql": 3306, "mariadb": 3306}


def env_urls() -> list[str]:
    """Return the extra database URLs given in AIODATABASES_TEST_URLS, in order, without blanks."""
    raw = os.environ.get("AIODATABASES_TEST_URLS", "")
    return [url.strip() for url in raw.split(",") if url.strip()]


def running_in_ci() -> bool:
    """Return True when the CI variable is set to something other than an explicit 'no'."""
    value = os.environ.get("CI", "").strip().lower()
    return value not in {"", "0", "false", "no", "off"}


def _backend_params() -> list[str]:
    params = [SQLITE_FILE]
    for url in env_urls():
        if url not in params:
            params.append(url)
    return params


def _backend_id(param: str) -> str:
    if param == SQLITE_FILE:
        return "sqlite"
    parts = urlsplit(param)
    return f"{parts.scheme}@{parts.hostname or 'local'}:{parts.port or ''}"


def _server_address(url: str) -> tuple[str, int] | None:
    parts = urlsplit(url)
    dialect = parts.scheme.split("+", 1)[0]
    if dialect == "sqlite":
        return None
    query = parse_qs(parts.query)
    hostname = parts.hostname or (query.get("host") or [""])[0]
    if not hostname or hostname.startswith("/"):
        return None
    return hostname, parts.port or _DEFAULT_PORTS.get(dialect, 0)


def require_reachable(url: str) -> None:
    """Skip (on a laptop) or fail (in CI) when the server behind url does not accept connections."""
    address = _server_address(url)
    if address is None:
        return
    try:
        with socket.create_connection(address, timeout=3):
            pass
    except OSError as exc:
        message = f"database server for {_backend_id(url)} is unreachable: {exc}"
        if running_in_ci():
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(params=_backend_params(), ids=_backend_id)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL per backend under test: always a fresh SQLite file, plus AIODATABASES_TEST_URLS."""
    param: str = request.param
    if param == SQLITE_FILE:
        return f"sqlite:///{tmp_path}/test.db"
    require_reachable(param)
    return param


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A URL of a fresh SQLite file database, for tests of SQLite-specific behaviour."""
    return f"sqlite:///{tmp_path}/sqlite-only.db"


@pytest.fixture(scope="session")
def sqlite_rows_per_second() -> float:
    """How many rows per second a recursive CTE counts on this machine, measured with sqlite3."""
    connection = sqlite3.connect(":memory:")
    try:
        rows = 1_000_000
        started = time.perf_counter()
        connection.execute(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?) "
            "SELECT count(*) FROM c",
            (rows,),
        ).fetchone()
        return rows / (time.perf_counter() - started)
    finally:
        connection.close()


@pytest.fixture(scope="session")
def slow_sql(sqlite_rows_per_second: float) -> Callable[[str, float], str]:
    """Return a function (url, seconds) -> raw SQL keeping that backend busy about that long."""

    def build(url: str, seconds: float) -> str:
        dialect = urlsplit(url).scheme.split("+", 1)[0]
        if dialect in {"postgresql", "postgres"}:
            return f"SELECT pg_sleep({seconds})"
        if dialect in {"mysql", "mariadb"}:
            return f"SELECT SLEEP({seconds})"
        rows = max(int(sqlite_rows_per_second * seconds), 1000)
        return (
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
            f"WHERE x < {rows}) SELECT count(*) FROM c"
        )

    return build


def _tables_of_the_suites() -> list[str]:
    """Names of every table the test packages create on a server, children before parents."""
    from notes.tables import metadata as notes_metadata
    from tests.aiodatabases.tables import ALL_TABLES

    names = [table.name for table in reversed(notes_metadata.sorted_tables)]
    names += ["alembic_version"]
    names += [table.name for table in reversed(ALL_TABLES) if table.name not in names]
    return names


async def _drop_suite_tables(url: str, names: list[str]) -> None:
    async with aiodatabases.Database(url) as database:
        dialect = database.url.dialect
        async with database.connection() as connection:
            if dialect == "postgresql":
                for name in names:
                    await connection.execute(f'DROP TABLE IF EXISTS "{name}" CASCADE')
            else:
                # A table of one suite may hold a foreign key to a table of the other, left
                # by an interrupted run; order does not matter with the checks off.
                await connection.execute("SET FOREIGN_KEY_CHECKS = 0")
                try:
                    for name in names:
                        await connection.execute(f"DROP TABLE IF EXISTS `{name}`")
                finally:
                    await connection.execute("SET FOREIGN_KEY_CHECKS = 1")


def _reachable_server_urls() -> list[str]:
    urls = []
    for url in env_urls():
        address = _server_address(url)
        if address is None:
            continue
        try:
            with socket.create_connection(address, timeout=3):
                urls.append(url)
        except OSError:
            continue  # the tests that use it skip or fail with the reason
    return urls


@pytest.fixture(scope="session", autouse=True)
def clean_server_databases() -> Iterator[None]:
    """Start and end the run with none of the suites' tables on the test servers.

    Both test packages create tables with the same names (``users``, ``notes``) on the same
    server databases; a run that was interrupted, or one package's tables left beside the
    other's, would otherwise fail the next run's set-up on a foreign key.
    """
    urls = _reachable_server_urls()
    names = _tables_of_the_suites()
    for url in urls:
        asyncio.run(_drop_suite_tables(url, names))
    yield
    for url in urls:
        asyncio.run(_drop_suite_tables(url, names))
