"""The error tree, translated driver errors, and bad input that must fail clearly and fast."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sqlalchemy import bindparam, select

import aiodatabases
from aiodatabases import Database

from .helpers import count_rows
from .tables import notes, users

ERROR_NAMES = [
    "Error",
    "InterfaceError",
    "ConfigurationError",
    "NotConnectedError",
    "TransactionStateError",
    "DatabaseError",
    "OperationalError",
    "PoolTimeoutError",
    "QueryTimeoutError",
    "IntegrityError",
    "ProgrammingError",
    "DataError",
    "NotSupportedError",
]

PARENTS = {
    "InterfaceError": "Error",
    "ConfigurationError": "InterfaceError",
    "NotConnectedError": "InterfaceError",
    "TransactionStateError": "InterfaceError",
    "DatabaseError": "Error",
    "OperationalError": "DatabaseError",
    "PoolTimeoutError": "OperationalError",
    "QueryTimeoutError": "OperationalError",
    "IntegrityError": "DatabaseError",
    "ProgrammingError": "DatabaseError",
    "DataError": "DatabaseError",
    "NotSupportedError": "DatabaseError",
}


def test_every_error_is_exported_at_top_level() -> None:
    """Each error of the tree is importable from aiodatabases and listed in __all__."""
    for name in ERROR_NAMES:
        assert isinstance(getattr(aiodatabases, name), type)
        assert name in aiodatabases.__all__


def test_public_names_are_exported() -> None:
    """Database, Connection, Transaction, DatabaseURL and Record are in __all__."""
    for name in ["Connection", "Database", "DatabaseURL", "Record", "Transaction"]:
        assert name in aiodatabases.__all__
        assert getattr(aiodatabases, name) is not None
    assert isinstance(aiodatabases.__version__, str)


@pytest.mark.parametrize(("child", "parent"), sorted(PARENTS.items()))
def test_error_tree_shape(child: str, parent: str) -> None:
    """Each error subclasses its parent in the documented tree."""
    assert issubclass(getattr(aiodatabases, child), getattr(aiodatabases, parent))


def test_error_root_is_an_exception() -> None:
    """aiodatabases.Error is an Exception, so except Exception catches it."""
    assert issubclass(aiodatabases.Error, Exception)


@pytest.mark.parametrize("name", ["PoolTimeoutError", "QueryTimeoutError"])
def test_timeout_errors_are_builtin_timeout_errors(name: str) -> None:
    """PoolTimeoutError and QueryTimeoutError are caught by except TimeoutError."""
    assert issubclass(getattr(aiodatabases, name), TimeoutError)


def test_misuse_errors_are_not_database_errors() -> None:
    """Misuse (InterfaceError) and server refusals (DatabaseError) are separate branches."""
    assert not issubclass(aiodatabases.InterfaceError, aiodatabases.DatabaseError)
    assert not issubclass(aiodatabases.DatabaseError, aiodatabases.InterfaceError)


async def test_unique_violation_raises_integrity_error(database: Database) -> None:
    """Inserting a duplicate unique value raises aiodatabases.IntegrityError."""
    await database.execute(users.insert(), {"name": "ada"})
    with pytest.raises(aiodatabases.IntegrityError) as info:
        await database.execute(users.insert(), {"name": "ada"})
    assert isinstance(info.value, aiodatabases.DatabaseError)
    assert await count_rows(database, users) == 1


async def test_not_null_violation_raises_integrity_error(database: Database) -> None:
    """Inserting NULL into a NOT NULL column raises aiodatabases.IntegrityError."""
    with pytest.raises(aiodatabases.IntegrityError):
        await database.execute("INSERT INTO users (name) VALUES (NULL)")


async def test_database_error_has_sqlstate_attribute(database: Database) -> None:
    """A DatabaseError carries .sqlstate: a string where the driver gives one, else None."""
    await database.execute(users.insert(), {"name": "ada"})
    with pytest.raises(aiodatabases.DatabaseError) as info:
        await database.execute(users.insert(), {"name": "ada"})
    assert info.value.sqlstate is None or isinstance(info.value.sqlstate, str)


async def test_integrity_error_in_transaction_rolls_back_the_block(database: Database) -> None:
    """An IntegrityError inside a transaction block propagates and undoes the block."""
    await database.execute(users.insert(), {"name": "ada"})

    async def insert_grace_then_duplicate() -> None:
        async with database.transaction():
            await database.execute(users.insert(), {"name": "grace"})
            await database.execute(users.insert(), {"name": "ada"})

    with pytest.raises(aiodatabases.IntegrityError):
        await insert_grace_then_duplicate()
    assert await count_rows(database, users) == 1
    await database.execute(users.insert(), {"name": "grace"})
    assert await count_rows(database, users) == 2


async def test_syntax_error_raises_database_error_and_database_stays_usable(
    database: Database,
) -> None:
    """Malformed SQL raises an aiodatabases.DatabaseError; the next query works."""
    with pytest.raises(aiodatabases.DatabaseError):
        await database.fetch_all("SELEC 1")
    assert await database.fetch_val("SELECT 1") == 1


async def test_missing_table_raises_database_error(database: Database) -> None:
    """Selecting from a table that does not exist raises an aiodatabases.DatabaseError."""
    with pytest.raises(aiodatabases.DatabaseError, match="no_such_table"):
        await database.fetch_all("SELECT * FROM no_such_table")


@pytest.mark.timeout(10)
async def test_missing_raw_parameter_names_the_parameter(database: Database) -> None:
    """Raw SQL with :wanted_value but no such key raises an aiodatabases error naming it."""
    with pytest.raises(aiodatabases.Error, match="wanted_value"):
        await database.fetch_val("SELECT :wanted_value", {"other_key": 1})
    assert await database.fetch_val("SELECT :wanted_value", {"wanted_value": 5}) == 5


@pytest.mark.timeout(10)
async def test_raw_parameter_without_any_values_names_the_parameter(database: Database) -> None:
    """Raw SQL with :wanted_value and values=None raises an aiodatabases error naming it."""
    with pytest.raises(aiodatabases.Error, match="wanted_value"):
        await database.fetch_val("SELECT :wanted_value")


@pytest.mark.timeout(10)
async def test_extra_raw_parameter_names_the_unknown_key(database: Database) -> None:
    """A values key that the raw SQL does not use raises an aiodatabases error naming it."""
    with pytest.raises(aiodatabases.Error, match="surplus_key"):
        await database.fetch_val("SELECT :wanted_value", {"wanted_value": 1, "surplus_key": 2})


async def test_empty_values_for_sql_without_parameters_is_fine(database: Database) -> None:
    """values={} with SQL that takes no parameters runs normally."""
    assert await database.fetch_val("SELECT 1", {}) == 1


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    "values",
    [
        {"txt": "typo", "completed": False},
        {"text": "fine", "completed": False, "txt": "typo"},
    ],
    ids=["instead-of-a-column", "besides-every-column"],
)
async def test_unknown_column_in_core_insert_values_names_it(
    database: Database, values: dict[str, object]
) -> None:
    """A values key naming no column is refused by name, as .values(txt=...) would be."""
    with pytest.raises(aiodatabases.Error, match="txt"):
        await database.execute(notes.insert(), values)
    assert await count_rows(database, notes) == 0


@pytest.mark.timeout(10)
async def test_missing_bindparam_in_core_select_names_it(database: Database) -> None:
    """A Core select whose bindparam gets no value raises an aiodatabases error naming it."""
    query = select(notes.c.text).where(notes.c.id == bindparam("wanted_note_id"))
    with pytest.raises(aiodatabases.Error, match="wanted_note_id"):
        await database.fetch_all(query, {"another": 1})


@pytest.mark.timeout(10)
async def test_execute_many_with_a_row_missing_a_key_inserts_nothing(database: Database) -> None:
    """execute_many whose third row lacks a parameter raises an aiodatabases error, no rows."""
    rows = [{"text": "a", "completed": False}] * 2 + [{"text": "c"}]
    with pytest.raises(aiodatabases.Error):
        await database.execute_many(
            "INSERT INTO notes (text, completed) VALUES (:text, :completed)", rows
        )
    assert await count_rows(database, notes) == 0


@pytest.mark.timeout(10)
async def test_unbindable_parameter_value_raises_an_aiodatabases_error(database: Database) -> None:
    """A value the driver cannot bind (an arbitrary object) raises an aiodatabases error."""
    with pytest.raises(aiodatabases.Error):
        await database.fetch_val("SELECT :thing", {"thing": object()})
    assert await database.fetch_val("SELECT 1") == 1


@pytest.mark.timeout(10)
async def test_not_connected_error_says_to_connect(database_url: str) -> None:
    """The NotConnectedError message tells the user to call connect()."""
    with pytest.raises(aiodatabases.NotConnectedError, match="connect"):
        await Database(database_url).fetch_all("SELECT 1")


async def _construct_and_connect(url: str) -> None:
    """Build a Database for url and connect it under a timeout; disconnect if that worked."""
    database = Database(url)
    await asyncio.wait_for(database.connect(), 10)
    await asyncio.wait_for(database.disconnect(), 10)


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "url",
    [
        "",
        "not a url",
        "sqlite",
        "://nowhere/app.db",
        "postgresql://scott@localhost:notaport/app",
    ],
)
async def test_malformed_url_raises_configuration_error(url: str) -> None:
    """A malformed URL raises ConfigurationError when built or connected, never hangs."""
    with pytest.raises(aiodatabases.ConfigurationError):
        await _construct_and_connect(url)


@pytest.mark.timeout(30)
async def test_unknown_scheme_raises_configuration_error_listing_supported_schemes() -> None:
    """An unknown scheme is refused with a message naming it and the supported schemes."""
    with pytest.raises(aiodatabases.ConfigurationError) as info:
        await _construct_and_connect("oracle://scott:tiger@localhost/orcl")
    message = str(info.value)
    assert "oracle" in message
    assert "sqlite" in message
    assert "tiger" not in message


@pytest.mark.timeout(30)
async def test_unknown_sqlite_driver_is_refused_not_rerouted(tmp_path: Path) -> None:
    """sqlite+nosuchdriver:// raises ConfigurationError instead of using another driver."""
    with pytest.raises(aiodatabases.ConfigurationError, match="nosuchdriver"):
        await _construct_and_connect(f"sqlite+nosuchdriver:///{tmp_path}/x.db")


@pytest.mark.timeout(30)
async def test_aiomysql_scheme_works_or_is_refused_by_name() -> None:
    """mysql+aiomysql:// is either supported or refused with a ConfigurationError naming it."""
    outcome: BaseException | None = None
    try:
        await _construct_and_connect("mysql+aiomysql://scott:tiger@127.0.0.1:1/app")
    except aiodatabases.Error as exc:
        outcome = exc
    if isinstance(outcome, aiodatabases.ConfigurationError):
        assert "aiomysql" in str(outcome)
    else:
        # Supported: the driver ran and found nothing listening on port 1.
        assert isinstance(outcome, aiodatabases.OperationalError)


_MISSING_DRIVER_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, sys
    sys.modules[{module!r}] = None  # makes "import {module}" fail as if not installed
    import aiodatabases

    async def main():
        try:
            database = aiodatabases.Database({url!r})
            await asyncio.wait_for(database.connect(), 10)
            try:
                value = await database.fetch_val("SELECT 1")
            finally:
                await database.disconnect()
            return {{"ok": value}}
        except BaseException as exc:
            names = [cls.__name__ for cls in type(exc).__mro__]
            return {{"error": names, "message": str(exc)}}

    print(json.dumps(asyncio.run(main())))
    """
)


def _run_without_module(module: str, url: str) -> dict[str, object]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    script = _MISSING_DRIVER_SCRIPT.format(module=module, url=url)
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env
    )
    assert completed.returncode == 0, completed.stderr
    result: dict[str, object] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.timeout(90)
def test_missing_postgres_driver_raises_configuration_error() -> None:
    """Without asyncpg installed, a postgresql:// URL raises ConfigurationError, not ImportError."""
    result = _run_without_module("asyncpg", "postgresql://scott:tiger@127.0.0.1:1/app")
    assert "ConfigurationError" in str(result.get("error")), result
    assert "asyncpg" in str(result["message"]) or "postgresql" in str(result["message"])


@pytest.mark.timeout(90)
def test_missing_aiosqlite_either_works_or_names_the_driver(tmp_path: Path) -> None:
    """Without aiosqlite, sqlite+aiosqlite:// works (own bridge) or names what to install."""
    result = _run_without_module("aiosqlite", f"sqlite+aiosqlite:///{tmp_path}/x.db")
    if "ok" in result:
        assert result["ok"] == 1
    else:
        assert "ConfigurationError" in str(result.get("error")), result
        assert "aiosqlite" in str(result["message"])
