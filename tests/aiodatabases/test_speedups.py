"""The C speedups agree with their pure-Python twins and with SQLAlchemy's own processors."""

from __future__ import annotations

import datetime as dt
import gc
import os
import pickle
import subprocess
import sys
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy.dialects.sqlite import base as sqlite_base
from sqlalchemy.engine import processors as sqlalchemy_processors
from sqlalchemy.sql import sqltypes

from aiodatabases import _records

DATETIMES: list[Any] = [
    dt.datetime(2024, 1, 2, 3, 4, 5, 678),
    dt.datetime(1, 1, 1),
    dt.datetime(999, 12, 31, 23, 59, 59, 999999),
    dt.datetime(9999, 12, 31, 23, 59, 59, 999999),
    dt.datetime(2024, 6, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))),
    dt.date(2020, 2, 29),
    None,
]


#: Tests of the C extension itself: they do not apply when it is turned off on purpose (a
#: failed build still fails them).
c_extension_only = pytest.mark.skipif(
    bool(os.environ.get("AIODATABASES_NO_EXTENSIONS")),
    reason="AIODATABASES_NO_EXTENSIONS turns the C extension off",
)


@pytest.mark.parametrize("value", DATETIMES, ids=repr)
def test_sqlite_datetime_text_matches_sqlalchemy(value: Any) -> None:
    """The DateTime bind text is exactly SQLAlchemy's, in C and in Python."""
    # SQLAlchemy's SQLite DATETIME and Boolean processors are untyped.
    process: Any = sqlite_base.DATETIME().bind_processor  # type: ignore[no-untyped-call]
    expected = process(None)(value)
    assert _records.sqlite_datetime(value) == expected
    assert _records._py_sqlite_datetime(value) == expected


@pytest.mark.parametrize("bad", ["2024-01-01", 3, dt.time(1, 2)])
def test_sqlite_datetime_rejects_what_sqlalchemy_rejects(bad: Any) -> None:
    """A value that is neither a datetime nor a date is a TypeError in both versions."""
    for convert in (_records.sqlite_datetime, _records._py_sqlite_datetime):
        with pytest.raises(TypeError, match="datetime and date"):
            convert(bad)


@pytest.mark.parametrize("value", [True, False, None, 1, 0, 1.0, 0.0, Decimal("1")])
def test_bool_to_int_matches_sqlalchemy(value: Any) -> None:
    """Booleans bind as SQLAlchemy binds them for SQLite: 1, 0 or NULL, from anything equal to
    True or False."""
    process: Any = sqltypes.Boolean().bind_processor
    expected = process(sqlite_base.SQLiteDialect())(value)
    for convert in (_records.bool_to_int, _records._py_bool_to_int):
        got = convert(value)
        assert (got, type(got)) == (expected, type(expected))


@pytest.mark.parametrize("bad", [2, -1, "yes", 1.5, "1"])
def test_bool_to_int_refuses_what_sqlalchemy_refuses(bad: Any) -> None:
    """Anything else is refused with SQLAlchemy's error: ValueError for another integer,
    TypeError for the rest."""
    bind_processor: Any = sqltypes.Boolean().bind_processor
    process = bind_processor(sqlite_base.SQLiteDialect())
    with pytest.raises((TypeError, ValueError)) as expected:
        process(bad)
    for convert in (_records.bool_to_int, _records._py_bool_to_int):
        with pytest.raises(expected.type, match=str(expected.value).split(":")[0]):
            convert(bad)


def _native_boolean_dialect() -> Any:
    from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg

    dialect: Any = PGDialect_asyncpg
    return dialect()


@pytest.mark.parametrize("value", [True, False, None, 1, 0, 1.0, 0.0, Decimal("1")])
def test_bool_to_bool_matches_sqlalchemy_on_a_native_boolean_driver(value: Any) -> None:
    """For asyncpg, Booleans bind as SQLAlchemy binds them there: True, False or None, from
    anything equal to True or False."""
    process: Any = sqltypes.Boolean().bind_processor
    expected = process(_native_boolean_dialect())(value)
    for convert in (_records.bool_to_bool, _records._py_bool_to_bool):
        got = convert(value)
        assert (got, type(got)) == (expected, type(expected))


@pytest.mark.parametrize("bad", [2, -1, "yes", 1.5, "1"])
def test_bool_to_bool_refuses_what_sqlalchemy_refuses(bad: Any) -> None:
    """ValueError for another integer, TypeError for the rest, as SQLAlchemy's."""
    bind_processor: Any = sqltypes.Boolean().bind_processor
    process = bind_processor(_native_boolean_dialect())
    with pytest.raises((TypeError, ValueError)) as expected:
        process(bad)
    for convert in (_records.bool_to_bool, _records._py_bool_to_bool):
        with pytest.raises(expected.type, match=str(expected.value).split(":")[0]):
            convert(bad)


@pytest.mark.parametrize("backend", ["postgresql", "mysql", "sqlite"])
@pytest.mark.parametrize("value", [True, False, None, 1, 0.0, 2, "yes"])
def test_each_dialect_binds_booleans_as_sqlalchemys_own_dialect_does(
    backend: str, value: Any
) -> None:
    """The backends' dialects swap in the C Boolean binders; what a statement binds, and what
    it refuses, is what SQLAlchemy's stock dialect for the same driver gives."""
    from sqlalchemy.dialects.mysql.asyncmy import MySQLDialect_asyncmy
    from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
    from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite

    from aiodatabases.backends._asyncmy_types import AsyncmyDialect
    from aiodatabases.backends._asyncpg_types import PostgreSQLDialect
    from aiodatabases.backends.sqlite import SQLiteDialect

    # SQLAlchemy's asyncpg dialect class is untyped.
    pg_ours: Any = PostgreSQLDialect
    pg_stock: Any = PGDialect_asyncpg
    ours, stock = {
        "postgresql": (pg_ours(), pg_stock()),
        "mysql": (AsyncmyDialect(), MySQLDialect_asyncmy()),
        "sqlite": (SQLiteDialect(), SQLiteDialect_pysqlite()),
    }[backend]

    def bind(dialect: Any) -> Any:
        process = sqltypes.Boolean().dialect_impl(dialect).bind_processor(dialect)
        try:
            got = process(value) if process is not None else value
        except (TypeError, ValueError) as exc:
            return type(exc)
        return got, type(got)

    assert bind(ours) == bind(stock)


def test_convert_rows_applies_processors_by_position() -> None:
    """convert_rows converts the named positions of every row and leaves the rest."""
    rows = [(1, "a", 2), (3, "b", 4)]
    processors = ((0, str), (2, float))
    assert _records.convert_rows(rows, processors) == [["1", "a", 2.0], ["3", "b", 4.0]]
    assert _records._py_convert_rows(rows, processors) == [["1", "a", 2.0], ["3", "b", 4.0]]


@c_extension_only
def test_the_extension_is_built_where_a_compiler_exists() -> None:
    """The test environment has a C compiler, so the speedups are in use."""
    assert _records.SPEEDUPS


def test_records_without_the_extension_behave_the_same() -> None:
    """With AIODATABASES_NO_EXTENSIONS set, records still support every access form."""
    script = (
        "import aiodatabases._records as r\n"
        "assert not r.SPEEDUPS\n"
        "meta = r.ResultMeta(['id', 'text'])\n"
        "row = meta.records([(1, 'a')])[0]\n"
        "assert (row['id'], row[1], row.text, dict(row), list(row)) == "
        "(1, 'a', 'a', {'id': 1, 'text': 'a'}, ['id', 'text'])\n"
        "print('ok')\n"
    )
    env = dict(os.environ, AIODATABASES_NO_EXTENSIONS="1")
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.stdout.strip() == "ok", done.stderr


@pytest.mark.skipif(
    not getattr(_records, "RECORD_FREELIST", 0),
    reason="this Python build keeps no free list of records (free-threaded, or newer than 3.13)",
)
def test_fetched_records_do_not_drive_the_cycle_collector() -> None:
    """Records built in bulk reuse freed ones, so fetching pages of rows over and over does
    not set off a young-generation collection (which would scan every row just fetched)."""
    meta = _records.ResultMeta(["id", "name"])
    rows = [(i, f"n{i}") for i in range(1000)]
    records = meta.records(rows)
    records = meta.records(rows)  # as a loop does: the last page lives while the next is built
    del records  # both pages fill the free list
    gc.collect()
    before = gc.get_stats()[0]["collections"]
    for _ in range(20):
        records = meta.records(rows)
        assert records[999]["name"] == "n999"
        assert records[0][0] == 0
    del records
    # 20,000 records were built; only the 20 lists that hold them were new allocations,
    # too few to reach the collection threshold (700).
    assert gc.get_stats()[0]["collections"] == before


def test_reused_records_are_whole_records() -> None:
    """A record made from a freed one reads its own row, has the right class, and a subclass
    with its own attributes (a different layout) is built and freed normally."""
    meta = _records.ResultMeta(["a", "b"])
    first = meta.records([(i, -i) for i in range(300)])
    del first
    again = meta.records([(i, str(i)) for i in range(300)])
    assert [tuple(r.values()) for r in again[:3]] == [(0, "0"), (1, "1"), (2, "2")]
    assert all(type(r) is _records.Record for r in again)
    assert again[5] == {"a": 5, "b": "5"}

    class Tagged(_records.Record):
        pass  # no __slots__: instances get a __dict__, so they never use the free list

    tagged = Tagged([1, 2], ["a", "b"])
    tagged.note = "kept"  # type: ignore[attr-defined]
    assert (tagged["b"], tagged.note) == (2, "kept")
    del tagged, again
    fresh = meta.records([(7, 8)])[0]
    assert (type(fresh), fresh.a, fresh.b) == (_records.Record, 7, 8)
    pickled = pickle.loads(pickle.dumps(fresh))
    assert pickled == fresh


DATETIME_TEXTS = [
    "2024-01-02 03:04:05.000123",
    "2024-01-02 03:04:05",
    "0001-01-01 00:00:00.000000",
    "9999-12-31 23:59:59.999999",
    "2024-01-02",
    "2024-01-02T03:04:05",
    "2024-01-02 03:04:05+02:00",
    "2024-01-02 03:04:05.5",
]


@pytest.mark.parametrize("text", DATETIME_TEXTS)
def test_str_to_datetime_matches_sqlalchemy(text: str) -> None:
    """The C reader of stored DATETIME text returns exactly what SQLAlchemy's returns."""
    expected = sqlalchemy_processors.str_to_datetime(text)
    got = _records._str_to_datetime(text)
    assert got is not None
    assert expected is not None
    assert (got, type(got), got.tzinfo) == (expected, type(expected), expected.tzinfo)


@pytest.mark.parametrize(
    "bad",
    [
        "2024-13-02 03:04:05.000000",
        "2024-02-30 03:04:05",
        "2024-01-02 03:04:0x",
        "2024-01-02 03:04:05.00012x",
        "2024-01-02 24:00:00",
        "0000-01-01 00:00:00",
        "",
        5,
    ],
)
def test_str_to_datetime_fails_as_sqlalchemy_fails(bad: Any) -> None:
    """Text that is not a valid timestamp raises what SQLAlchemy's reader raises."""
    with pytest.raises((ValueError, TypeError)) as expected:
        sqlalchemy_processors.str_to_datetime(bad)
    with pytest.raises(expected.type):
        _records._str_to_datetime(bad)


@pytest.mark.parametrize("text", DATETIME_TEXTS)
def test_str_to_utc_datetime_reads_naive_text_as_utc_and_converts_offsets(text: str) -> None:
    """The reader of DateTime(timezone=True) on SQLite: naive stored text is UTC, text with an
    offset is the same instant in UTC; the C and Python readers agree."""
    parsed = dt.datetime.fromisoformat(text)
    expected = parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed.astimezone(dt.UTC)
    for reader in (_records.str_to_utc_datetime, _records._py_str_to_utc_datetime):
        got = reader(text)
        assert got is not None
        assert (got, got.tzinfo, got.utcoffset()) == (expected, dt.UTC, dt.timedelta(0))
    assert _records.str_to_utc_datetime(None) is None


@pytest.mark.parametrize("bad", ["2024-13-02 03:04:05.000000", "2024-01-02 24:00:00", "", 5])
def test_str_to_utc_datetime_fails_as_fromisoformat_fails(bad: Any) -> None:
    with pytest.raises((ValueError, TypeError)) as expected:
        dt.datetime.fromisoformat(bad)
    for reader in (_records.str_to_utc_datetime, _records._py_str_to_utc_datetime):
        with pytest.raises(expected.type):
            reader(bad)


@pytest.mark.parametrize("value", [0, 1, 2, -1, None, True, False])
def test_int_to_boolean_matches_sqlalchemy(value: Any) -> None:
    """The C Boolean reader agrees with SQLAlchemy's."""
    assert _records._int_to_boolean(value) is sqlalchemy_processors.int_to_boolean(value)


@c_extension_only
def test_core_results_use_the_c_readers_in_bulk() -> None:
    """A plan built from SQLAlchemy's processors swaps in the C twins, and records built in
    bulk convert with them to the same values."""
    int_to_boolean: Any = sqlalchemy_processors.int_to_boolean
    str_to_datetime: Any = sqlalchemy_processors.str_to_datetime
    meta = _records.ResultMeta(
        ["flag", "at"],
        (),
        [
            _records._FASTER.get(int_to_boolean, int_to_boolean),
            _records._FASTER.get(str_to_datetime, str_to_datetime),
        ],
    )
    assert [p for _, p in meta.processors] == [_records._int_to_boolean, _records._str_to_datetime]
    rows = [(1, "2024-01-02 03:04:05.000006"), (0, None), (None, "2024-01-02")]
    got = [tuple(r.values()) for r in meta.records(rows)]
    assert got == [
        (True, dt.datetime(2024, 1, 2, 3, 4, 5, 6)),
        (False, None),
        (None, dt.datetime(2024, 1, 2)),
    ]


def test_plan_names_are_interned_for_lookups_by_identity() -> None:
    """Column names arrive from drivers as fresh strings; the plan keeps the interned ones, so
    ``row["id"]`` in code finds its key by identity, and reads still work by equal text."""
    fresh = "".join(["i", "d"])
    assert fresh is not sys.intern("id")
    meta = _records.ResultMeta([fresh, "".join(["na", "me"])])
    assert meta.names[0] is sys.intern("id")
    assert next(key for key in meta.keymap if key == "id") is sys.intern("id")
    record = meta.records([(7, "x")])[0]
    assert (record["id"], record[fresh], record.name, list(record)) == (7, 7, "x", ["id", "name"])


def test_lookups_by_name_and_position_agree_with_the_keymap() -> None:
    """Names found by identity, equal strings, positions (negative too) and out-of-range
    positions read what the keymap says; a duplicated name reads its last column."""
    meta = _records.ResultMeta(["id", "name", "id"])
    record = meta.records([(1, "x", 3)])[0]
    fresh = "".join(["na", "me"])
    assert (record["id"], record.id, record["name"], record[fresh]) == (3, 3, "x", "x")
    assert (record[0], record[1], record[2], record[-1], record[-3]) == (1, "x", 3, 3, 1)
    assert record[True] == "x"  # as the keymap reads it: True == 1
    for position in (3, -4, 2**70, -(2**70)):
        with pytest.raises(IndexError):
            record[position]
    with pytest.raises(KeyError):
        record["missing"]
    with pytest.raises(AttributeError):
        _ = record.missing


def test_class_attributes_and_private_names_are_not_read_as_columns() -> None:
    """``row.keys`` stays the method and ``row._x`` is not a column; both still read by name."""
    meta = _records.ResultMeta(["keys", "_x", "get", "value"])
    record = meta.records([(1, 2, 3, 4)])[0]
    assert list(record.keys()) == ["keys", "_x", "get", "value"]
    assert record.get("value") == 4
    assert (record["keys"], record["_x"], record["get"], record.value) == (1, 2, 3, 4)
    with pytest.raises(AttributeError):
        _ = record._x


def test_a_change_to_the_record_class_wins_over_columns_read_as_attributes() -> None:
    """Attribute reads skip the class lookup only while Record is as it was: an attribute added
    to the class afterwards wins over the column, as it does without the extension."""
    script = (
        "import aiodatabases._records as r\n"
        "meta = r.ResultMeta(['extra', 'id'])\n"
        "row = meta.records([(1, 2)])[0]\n"
        "assert (row.extra, row.id) == (1, 2)\n"
        "r.Record.extra = property(lambda self: 'from the class')\n"
        "assert (row.extra, row.id, row['extra']) == ('from the class', 2, 1)\n"
        "del r.Record.extra\n"
        "assert (row.extra, row.id) == (1, 2)\n"
        "print('ok')\n"
    )
    for extensions in ("", "1"):
        env = dict(os.environ, AIODATABASES_NO_EXTENSIONS=extensions)
        if not extensions:
            env.pop("AIODATABASES_NO_EXTENSIONS")
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60
        )
        assert done.stdout.strip() == "ok", done.stderr


@c_extension_only
def test_rows_handed_over_are_converted_in_place_only_when_nothing_else_holds_them() -> None:
    """``records(rows, take=True)`` may convert a row in place, but only one that the rows
    list alone refers to; a row the caller still holds is copied and left as it was."""
    int_to_boolean: Any = sqlalchemy_processors.int_to_boolean
    meta = _records.ResultMeta(["id", "flag"], (), [None, _records._FASTER.get(int_to_boolean)])
    kept = (2, 0)
    rows = [tuple([1, 1]), kept]
    records = meta.records(rows, take=True)
    assert [tuple(r.values()) for r in records] == [(1, True), (2, False)]
    assert kept == (2, 0)
    assert rows[1] is kept
    assert type(records[1]["flag"]) is bool


@pytest.mark.parametrize(
    "value", [1.5, float("nan"), None, 3, "text", Decimal("2.25"), Decimal("1E+400")]
)
def test_decimal_to_float_matches_its_python_twin(value: Any) -> None:
    """A Decimal becomes a float; anything else comes back as the very same object."""
    expected = _records._py_decimal_to_float(value)
    got = _records.decimal_to_float(value)
    if isinstance(value, Decimal):
        assert type(got) is float
        assert got == expected
    else:
        assert got is value


class _DriverRow(Sequence[Any]):
    """A driver's own row type (as asyncpg's Record): a sequence that is not a tuple."""

    def __init__(self, *values: Any) -> None:
        self._values = values

    def __getitem__(self, index: Any) -> Any:
        return self._values[index]

    def __len__(self) -> int:
        return len(self._values)


@c_extension_only
def test_a_driver_row_whose_floats_need_nothing_is_kept_uncopied() -> None:
    """Float columns of a driver row: no Decimal among them, the row itself is kept; one
    Decimal, and the record holds converted values (the driver's row left as it was)."""
    meta = _records.ResultMeta(
        ["id", "score", "ratio"], (), [None, _records.decimal_to_float, _records.decimal_to_float]
    )
    plain = _DriverRow(1, 2.5, None)
    mixed = _DriverRow(2, Decimal("0.5"), 4.0)
    for records in (meta.records([plain, mixed]), [meta.record(plain), meta.record(mixed)]):
        first, second = records
        assert first._row is plain
        assert (first["id"], first["score"], first["ratio"]) == (1, 2.5, None)
        assert second._row is not mixed
        assert (second["id"], second["score"], second["ratio"]) == (2, 0.5, 4.0)
        assert type(second["score"]) is float
        assert mixed[1] == Decimal("0.5")
