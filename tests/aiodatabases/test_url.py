"""DatabaseURL: the parts of a URL, replace(), password hiding and equality."""

from __future__ import annotations

import pytest

import aiodatabases
from aiodatabases import DatabaseURL

FULL = "postgresql+asyncpg://scott:tiger@db.example.com:6543/inventory?min_size=2&max_size=9"


def test_full_url_exposes_every_part() -> None:
    """Every documented part of a full URL is parsed as databases 0.9 parsed it."""
    url = DatabaseURL(FULL)
    assert url.scheme == "postgresql+asyncpg"
    assert url.dialect == "postgresql"
    assert url.driver == "asyncpg"
    assert url.username == "scott"
    assert url.password == "tiger"
    assert url.hostname == "db.example.com"
    assert url.port == 6543
    assert url.netloc == "scott:tiger@db.example.com:6543"
    assert url.database == "inventory"
    assert url.options == {"min_size": "2", "max_size": "9"}


def test_url_without_driver_has_empty_driver_and_no_credentials() -> None:
    """A bare scheme gives driver "" and None for missing username, password and port."""
    url = DatabaseURL("postgresql://localhost/app")
    assert url.dialect == "postgresql"
    assert url.driver == ""
    assert url.username is None
    assert url.password is None
    assert url.port is None
    assert url.hostname == "localhost"
    assert url.database == "app"
    assert url.options == {}


def test_percent_encoded_credentials_are_decoded() -> None:
    """Username and password come back with percent-escapes decoded."""
    url = DatabaseURL("mysql://us%40er:p%40ss%3Aword@localhost/db")
    assert url.username == "us@er"
    assert url.password == "p@ss:word"


def test_hostname_falls_back_to_host_query_option() -> None:
    """Without a host in the netloc, hostname comes from ?host= (a Unix socket directory)."""
    url = DatabaseURL("postgresql://scott@/app?host=/var/run/postgresql")
    assert url.hostname == "/var/run/postgresql"
    assert url.database == "app"


def test_hostname_falls_back_to_unix_sock_query_option() -> None:
    """Without a host in the netloc, hostname comes from ?unix_sock=."""
    url = DatabaseURL("mysql://scott@/app?unix_sock=/tmp/mysql.sock")
    assert url.hostname == "/tmp/mysql.sock"


@pytest.mark.parametrize(
    ("raw", "database"),
    [
        ("sqlite:///./relative.db", "./relative.db"),
        ("sqlite:///relative.db", "relative.db"),
        ("sqlite:////absolute/path/app.db", "/absolute/path/app.db"),
        ("sqlite:///:memory:", ":memory:"),
        ("sqlite+aiosqlite:///file::memory:?cache=shared", "file::memory:"),
    ],
)
def test_sqlite_url_database_is_the_path(raw: str, database: str) -> None:
    """The database of a SQLite URL is the file path after the third slash."""
    url = DatabaseURL(raw)
    assert url.dialect == "sqlite"
    assert url.database == database


def test_sqlite_url_query_becomes_options() -> None:
    """The query string of a SQLite URL is exposed as options."""
    url = DatabaseURL("sqlite:///file::memory:?cache=shared")
    assert url.options == {"cache": "shared"}


def test_ssl_option_is_read_from_query() -> None:
    """ssl=verify-full in the query string is kept as a string option."""
    url = DatabaseURL("postgresql://localhost/app?ssl=verify-full")
    assert url.options["ssl"] == "verify-full"


def test_str_returns_the_url_exactly_as_given() -> None:
    """str() gives back the original text, password included."""
    assert str(DatabaseURL(FULL)) == FULL


def test_obscure_password_replaces_password_with_stars() -> None:
    """obscure_password hides the password behind eight stars and keeps the rest."""
    url = DatabaseURL("postgresql://scott:tiger@localhost:5432/app")
    assert url.obscure_password == "postgresql://scott:********@localhost:5432/app"


def test_obscure_password_without_password_is_the_url() -> None:
    """A URL without a password is unchanged by obscure_password."""
    assert DatabaseURL("sqlite:///app.db").obscure_password == "sqlite:///app.db"


def test_repr_hides_the_password() -> None:
    """repr() never shows the password, so logging a URL leaks no secret."""
    text = repr(DatabaseURL("postgresql://scott:tiger@localhost/app"))
    assert "tiger" not in text
    assert "********" in text
    assert "scott" in text


def test_replace_database_returns_a_new_url() -> None:
    """replace(database=...) changes the path and leaves the original untouched."""
    url = DatabaseURL(FULL)
    other = url.replace(database="test_inventory")
    assert other.database == "test_inventory"
    assert other.hostname == "db.example.com"
    assert other.options == {"min_size": "2", "max_size": "9"}
    assert url.database == "inventory"


def test_replace_netloc_parts() -> None:
    """replace() of username, password, hostname and port rebuilds the netloc."""
    url = DatabaseURL("postgresql://scott:tiger@localhost:5432/app")
    other = url.replace(username="alice", password="secret", hostname="db", port=6000)
    assert other.username == "alice"
    assert other.password == "secret"
    assert other.hostname == "db"
    assert other.port == 6000
    assert other.netloc == "alice:secret@db:6000"
    assert other.database == "app"


def test_replace_driver_and_dialect_rebuild_the_scheme() -> None:
    """replace(driver=...) and replace(dialect=...) change the two halves of the scheme."""
    url = DatabaseURL("postgresql://localhost/app")
    assert url.replace(driver="asyncpg").scheme == "postgresql+asyncpg"
    assert url.replace(driver="asyncpg").replace(dialect="mysql").scheme == "mysql+asyncpg"


def test_urls_compare_equal_by_string() -> None:
    """Two DatabaseURL objects of the same text are equal, and equal to the text itself."""
    assert DatabaseURL(FULL) == DatabaseURL(FULL)
    assert DatabaseURL(FULL) == FULL
    assert DatabaseURL(FULL) != DatabaseURL(FULL.replace("inventory", "other"))


def test_database_url_accepts_a_database_url() -> None:
    """DatabaseURL(DatabaseURL(text)) is the same URL."""
    assert DatabaseURL(DatabaseURL(FULL)) == DatabaseURL(FULL)
    assert str(DatabaseURL(DatabaseURL(FULL))) == FULL


def test_database_keeps_url_exactly_as_given(database_url: str) -> None:
    """Database(url).url equals DatabaseURL(url) and prints as the same text."""
    database = aiodatabases.Database(database_url)
    assert database.url == DatabaseURL(database_url)
    assert str(database.url) == database_url


def test_database_accepts_a_database_url_object(sqlite_url: str) -> None:
    """Database() takes a DatabaseURL as well as a string."""
    database = aiodatabases.Database(DatabaseURL(sqlite_url))
    assert str(database.url) == sqlite_url


async def test_database_built_from_database_url_object_runs_queries(sqlite_url: str) -> None:
    """A Database made from a DatabaseURL object connects and queries."""
    async with aiodatabases.Database(DatabaseURL(sqlite_url)) as database:
        assert await database.fetch_val("SELECT 41 + 1") == 42
