"""The C reader (``_csqlite``) that steps quick reads on the loop's thread: it returns exactly
what the sqlite3 module returns, and hands everything else back to it."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from aiodatabases import Database, exceptions
from aiodatabases.backends import sqlite as sqlite_backend

from .tables import notes

pytestmark = pytest.mark.skipif(
    sqlite_backend._Reader is None, reason="the C reader is not built or found no library"
)


@pytest.fixture
def raw(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """A stdlib connection as the backend opens them, with a table of every storage class."""
    conn = sqlite3.connect(tmp_path / "r.db", isolation_level=None, check_same_thread=False)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, i, f, s, b, n)")
    conn.executemany(
        "INSERT INTO t VALUES (?, ?, ?, ?, ?, ?)",
        [
            (1, 0, 0.0, "", b"", None),
            (2, -(2**63), -1.5e300, "héllo wörld ✓ 𝄞", b"\x00\xff" * 100, None),
            (3, 2**63 - 1, float("inf"), "x" * 100_000, b"blob", None),
            (4, "text in an untyped column", 3, 4.25, None, b"b"),
        ],
    )
    try:
        yield conn
    finally:
        conn.close()


def _reader(conn: sqlite3.Connection) -> Any:
    make = sqlite_backend._Reader
    assert make is not None
    return make(conn)


def _stdlib(conn: sqlite3.Connection, sql: str, args: Any) -> tuple[list[Any], tuple[str, ...]]:
    cursor = conn.execute(sql, args)
    return cursor.fetchall(), tuple(d[0] for d in cursor.description)


def test_rows_and_names_equal_the_sqlite3_modules(raw: sqlite3.Connection) -> None:
    """Every storage class, extremes of each, and column names, as the stdlib returns them."""
    reader = _reader(raw)
    for sql, args in [
        ("SELECT * FROM t ORDER BY id", ()),
        ('SELECT id, s AS label, i + 1 AS "odd name" FROM t WHERE id >= ?', [2]),
        ("SELECT ?, ?, ?, ?, ?, ?", (None, -7, 2.5, "ünïcode", b"\x01\x02", 2**62)),
        ("SELECT * FROM t WHERE id > ?", (99,)),
    ]:
        done = reader.fetch(sql, args, 0)
        assert done is not None
        rows, names = done
        expected_rows, expected_names = _stdlib(raw, sql, args)
        assert rows == expected_rows
        assert [tuple(map(type, row)) for row in rows] == [
            tuple(map(type, row)) for row in expected_rows
        ]
        assert names == expected_names
    rows, _ = reader.fetch("SELECT id FROM t ORDER BY id", (), 2)
    assert rows == [(1,), (2,)]


_VALUES = st.one_of(
    st.none(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.text(),
    st.binary(),
)


@settings(max_examples=300, deadline=None)
@given(values=st.lists(_VALUES, min_size=1, max_size=6))
def test_any_values_come_back_as_the_sqlite3_module_returns_them(values: list[Any]) -> None:
    """Values of every type the reader binds, bound, stored, read back and transformed by
    SQL, equal what the stdlib gives for the same statement, type for type."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    try:
        reader = _reader(conn)
        marks = ", ".join("?" for _ in values)
        columns = ", ".join(f"c{i}" for i in range(len(values)))
        conn.execute(f"CREATE TABLE v ({columns})")
        conn.execute(f"INSERT INTO v VALUES ({marks})", values)
        for sql, args in [
            (f"SELECT {marks}", values),
            ("SELECT * FROM v WHERE rowid = ?", [1]),
            (
                "SELECT "
                + ", ".join(f"typeof(c{i}), quote(c{i})" for i in range(len(values)))
                + " FROM v",
                [],
            ),
        ]:
            done = reader.fetch(sql, args, 0)
            assert done is not None
            expected_rows, expected_names = _stdlib(conn, sql, args)
            assert done[0] == expected_rows
            assert [type(v) for v in done[0][0]] == [type(v) for v in expected_rows[0]]
            assert done[1] == expected_names
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("sql", "args"),
    [
        ("INSERT INTO t (id) VALUES (10) RETURNING id", ()),  # a write
        ("SELECT 1; SELECT 2", ()),  # two statements
        ("SELECT 1;;", ()),  # the sqlite3 module refuses this too
        ("CREATE TABLE u (x)", ()),  # no result columns
        ("SELECT ?", (True,)),  # a subclass of int: the sqlite3 module may adapt it
        ("SELECT ?", (2**64,)),  # does not fit: the sqlite3 module raises
        ("SELECT ?", (bytearray(b"x"),)),
        ("SELECT ?", ("\ud800",)),  # not encodable
        ("SELECT ?", (1, 2)),  # the wrong number of arguments
        ("SELECT :a", {"a": 1}),  # named arguments
        ("SELECT no_such_column FROM t", ()),  # does not prepare
    ],
)
def test_what_it_does_not_reproduce_goes_to_the_sqlite3_module(
    raw: sqlite3.Connection, sql: str, args: Any
) -> None:
    """None means "run it through the sqlite3 module", and nothing ran."""
    reader = _reader(raw)
    assert reader.fetch(sql, args, 0) is None
    assert raw.execute("SELECT count(*) FROM t").fetchone() == (4,)
    assert not raw.in_transaction


def test_factories_other_threads_and_a_closed_connection_are_left_alone(
    raw: sqlite3.Connection,
) -> None:
    reader = _reader(raw)
    sql = "SELECT s FROM t WHERE id = 1"
    assert reader.fetch(sql, (), 0) == ([("",)], ("s",))
    raw.text_factory = bytes
    assert reader.fetch(sql, (), 0) is None
    raw.text_factory = str
    raw.row_factory = sqlite3.Row
    assert reader.fetch(sql, (), 0) is None
    raw.row_factory = None
    elsewhere: list[Any] = []
    thread = threading.Thread(target=lambda: elsewhere.append(reader.fetch(sql, (), 0)))
    thread.start()
    thread.join()
    assert elsewhere == [None]
    assert reader.kept() == 1
    raw.close()
    assert reader.fetch(sql, (), 0) is None  # no crash, and the statements are let go
    assert reader.kept() == 0


def test_errors_while_stepping_are_left_to_the_sqlite3_module(raw: sqlite3.Connection) -> None:
    """A function that raises, text that is not UTF-8: None, the statement reset."""

    def fails(value: Any) -> Any:
        raise ValueError("no")

    raw.create_function("fails", 1, fails)
    reader = _reader(raw)
    assert reader.fetch("SELECT fails(id) FROM t", (), 0) is None
    raw.execute("INSERT INTO t (id, s) VALUES (20, CAST(x'ff' AS TEXT))")
    assert reader.fetch("SELECT s FROM t WHERE id = 20", (), 0) is None
    with pytest.raises(sqlite3.OperationalError, match="decode"):
        raw.execute("SELECT s FROM t WHERE id = 20").fetchall()
    # the reset statements hold nothing: the schema can change
    raw.execute("DROP TABLE t")


def test_a_statement_let_go_while_it_runs_finishes_first(raw: sqlite3.Connection) -> None:
    """A function the statement calls drops every kept statement (close()), the running one
    included: it is finalized only once it has returned its rows."""
    reader = _reader(raw)

    def let_go(value: Any) -> Any:
        reader.close()
        return value

    raw.create_function("let_go", 1, let_go)
    sql = "SELECT let_go(id), s FROM t ORDER BY id"
    done = reader.fetch(sql, (), 0)
    assert done is not None
    assert done[0] == _stdlib(raw, sql, ())[0]
    assert reader.kept() == 0
    assert reader.fetch(sql, (), 0) == done


def test_a_changed_schema_gives_the_new_columns(raw: sqlite3.Connection) -> None:
    reader = _reader(raw)
    assert reader.fetch("SELECT * FROM t WHERE id = 1", (), 0)[1] == ("id", "i", "f", "s", "b", "n")
    raw.execute("ALTER TABLE t ADD COLUMN extra DEFAULT 7")
    rows, names = reader.fetch("SELECT * FROM t WHERE id = 1", (), 0)
    assert names == ("id", "i", "f", "s", "b", "n", "extra")
    assert rows == [(1, 0, 0.0, "", b"", None, 7)]


def test_kept_statements_are_bounded_and_closed(raw: sqlite3.Connection) -> None:
    reader = _reader(raw)
    for i in range(600):
        assert reader.fetch(f"SELECT {i}", (), 0) == ([(i,)], (str(i),))
        assert reader.kept() <= 256
    reader.close()
    assert reader.kept() == 0
    assert reader.fetch("SELECT 1", (), 0) == ([(1,)], ("1",))


def test_an_adapter_for_a_base_type_turns_it_off() -> None:
    """Once an adapter for int is registered, the sqlite3 module adapts every int: so must the
    reader, which then leaves every statement to it (in a fresh interpreter: it is for good)."""
    script = (
        "import sqlite3\n"
        "from aiodatabases.backends import sqlite as b\n"
        "raw = sqlite3.connect(':memory:')\n"
        "reader = b._Reader(raw)\n"
        "assert reader.fetch('SELECT ?', (1,), 0) == ([(1,)], ('?',))\n"
        "sqlite3.register_adapter(int, lambda v: v * 10)\n"
        "assert reader.fetch('SELECT ?', (1,), 0) is None\n"
        "assert raw.execute('SELECT ?', (1,)).fetchone() == (10,)\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=os.environ
    )
    assert done.stdout.strip() == "ok", done.stderr


async def test_the_database_reads_through_it(sqlite_database: Database) -> None:
    """fetch_all and fetch_one on the loop use the reader; results as before, Core and raw."""
    for i in range(3):
        await sqlite_database.execute(notes.insert(), {"text": f"n{i}", "completed": i == 1})
    async with sqlite_database.connection() as connection:
        backend_connection = connection._raw
        assert isinstance(backend_connection, sqlite_backend.SQLiteConnection)
        reader = backend_connection._reader
        assert reader is not None
        before = reader.kept()
        rows = await connection.fetch_all(select(notes).order_by(notes.c.id))
        assert [(r.text, r.completed) for r in rows] == [("n0", False), ("n1", True), ("n2", False)]
        one = await connection.fetch_one("SELECT text FROM notes WHERE id = :id", {"id": 2})
        assert one is not None
        assert one["text"] == "n1"
        assert await connection.fetch_one("SELECT text FROM notes WHERE id = -1") is None
        assert reader.kept() == before + 3


async def test_errors_reach_the_caller_as_before(sqlite_database: Database) -> None:
    async with sqlite_database.connection() as connection:
        raw_connection = connection.raw_connection

        def fails(value: Any) -> Any:
            raise ValueError("no")

        raw_connection.create_function("fails", 1, fails)
        with pytest.raises(exceptions.OperationalError, match="user-defined function raised"):
            await connection.fetch_all("SELECT fails(1)")
        with pytest.raises(exceptions.ProgrammingError):
            await connection.fetch_all("SELECT 1; SELECT 2")
        assert await connection.fetch_val("SELECT 41 + 1") == 42


async def test_a_read_that_overruns_the_budget_still_moves_to_a_thread(
    sqlite_database: Database,
) -> None:
    """The progress handler interrupts the stepped read as it did the stdlib's; the read runs
    again on a worker thread and returns everything, while the loop stays free."""
    ticks = 0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0.005)

    task = asyncio.create_task(ticker())
    sql = (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < :n) "
        "SELECT count(*), sum(x) FROM c"
    )
    n = 3_000_000
    row = await sqlite_database.fetch_one(sql, {"n": n})
    stop.set()
    await task
    assert row is not None
    assert (row[0], row[1]) == (n, n * (n + 1) // 2)
    assert ticks > 2
