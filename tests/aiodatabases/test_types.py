"""Column types round-trip through Core tables and come out converted in every access form."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Date, func, select, text

from aiodatabases import Database, Record

from .tables import Mood, kitchen_sink

UTC = dt.UTC
PLUS_TWO = dt.timezone(dt.timedelta(hours=2))
MINUS_FIVE = dt.timezone(dt.timedelta(hours=-5))

NESTED_JSON: dict[str, Any] = {
    "ключ": ["значение", {"emoji": "🎉", "none": None, "float": 1.25, "flag": True}],
    "numbers": [1, 2, 3],
    "nested": {"deeper": {"deepest": "ünïcødé"}},
}

# (column, value written, value expected back)
CASES: list[tuple[str, Any, Any]] = [
    ("integer", 2**62, 2**62),
    ("integer", -17, -17),
    ("string", 'O\'Brien says "hi" ünïcødé 🎉', 'O\'Brien says "hi" ünïcødé 🎉'),
    ("text", "line\n" * 20_000, "line\n" * 20_000),
    ("boolean", True, True),
    ("boolean", False, False),
    ("float", 1.5, 1.5),
    ("numeric", Decimal("12345678.1234"), Decimal("12345678.1234")),
    ("numeric", Decimal("-0.5"), Decimal("-0.5")),
    ("date", dt.date(2024, 2, 29), dt.date(2024, 2, 29)),
    ("time", dt.time(13, 45, 30, 500), dt.time(13, 45, 30, 500)),
    (
        "naive",
        dt.datetime(2024, 5, 6, 12, 30, 45, 123456),
        dt.datetime(2024, 5, 6, 12, 30, 45, 123456),
    ),
    (
        "aware",
        dt.datetime(2024, 5, 6, 12, 30, 45, 123456, tzinfo=UTC),
        dt.datetime(2024, 5, 6, 12, 30, 45, 123456, tzinfo=UTC),
    ),
    (
        "aware",
        dt.datetime(2024, 5, 6, 12, 30, 45, 123456, tzinfo=PLUS_TWO),
        dt.datetime(2024, 5, 6, 10, 30, 45, 123456, tzinfo=UTC),
    ),
    (
        "aware",
        dt.datetime(2024, 12, 31, 22, 0, tzinfo=MINUS_FIVE),
        dt.datetime(2025, 1, 1, 3, 0, tzinfo=UTC),
    ),
    ("mood", Mood.so_so, Mood.so_so),
    ("mood", Mood.happy, Mood.happy),
    ("payload", NESTED_JSON, NESTED_JSON),
    ("payload", [1, "two", 3.5, False, None, {"k": "v"}], [1, "two", 3.5, False, None, {"k": "v"}]),
    ("blob", bytes(range(256)), bytes(range(256))),
    ("blob", b"", b""),
    ("tags", ["red", "green", "blue"], ["red", "green", "blue"]),
]


def _case_id(case: tuple[str, Any, Any]) -> str:
    column, value, _ = case
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return f"{column}-{value.utcoffset()}"
    return f"{column}-{type(value).__name__}"


def _mismatch(got: object, expected: object) -> str | None:
    """Return why got is not exactly expected (same type, value and time zone), or None."""
    if type(got) is not type(expected):
        return f"type {type(got).__name__} ({got!r}) instead of {type(expected).__name__}"
    if got != expected:
        return f"{got!r} instead of {expected!r}"
    if isinstance(expected, dt.datetime) and isinstance(got, dt.datetime):
        if (got.tzinfo is None) != (expected.tzinfo is None):
            return f"tzinfo {got.tzinfo!r} instead of {expected.tzinfo!r}"
        if got.utcoffset() != expected.utcoffset():
            return f"utcoffset {got.utcoffset()} instead of {expected.utcoffset()}"
    return None


def _access_forms(row: Record, name: str) -> dict[str, object]:
    position = list(row.keys()).index(name)
    return {
        "row[name]": row[name],
        "row[position]": row[position],
        "row[table.c.name]": row[kitchen_sink.c[name]],
        "row.name": getattr(row, name),
        "row._mapping[name]": row._mapping[name],
        "dict(row)[name]": dict(row)[name],
        "row.values()": list(row.values())[position],
        "row.items()": dict(row.items())[name],
    }


async def _rows_from_every_method(database: Database) -> dict[str, Record]:
    query = kitchen_sink.select()
    rows: dict[str, Record] = {}
    one = await database.fetch_one(query)
    assert one is not None
    rows["fetch_one"] = one
    rows["fetch_all"] = (await database.fetch_all(query))[0]
    iterated = [row async for row in database.iterate(query)]
    assert len(iterated) == 1
    rows["iterate"] = iterated[0]
    async with database.connection() as connection:
        via_connection = await connection.fetch_one(query)
        assert via_connection is not None
        rows["connection.fetch_one"] = via_connection
    return rows


def _problems(rows: dict[str, Record], column: str, expected: object) -> list[str]:
    problems = []
    for source, row in rows.items():
        for form, got in _access_forms(row, column).items():
            why = _mismatch(got, expected)
            if why is not None:
                problems.append(f"{source} {form}: {why}")
    return problems


@pytest.mark.parametrize(("column", "value", "expected"), CASES, ids=[_case_id(c) for c in CASES])
async def test_value_round_trips_through_every_access_form(
    database: Database, column: str, value: Any, expected: Any
) -> None:
    """A value written through a Core insert reads back converted, in every method and form."""
    await database.execute(kitchen_sink.insert(), {column: value})
    rows = await _rows_from_every_method(database)
    assert _problems(rows, column, expected) == []
    assert _mismatch(await database.fetch_val(select(kitchen_sink.c[column])), expected) is None


async def test_null_round_trips_as_none_for_every_type(database: Database) -> None:
    """A row of NULLs reads back as None in every column, TypeDecorator and JSON included."""
    await database.execute(kitchen_sink.insert(), {"id": 1})
    rows = await _rows_from_every_method(database)
    columns = [column.name for column in kitchen_sink.c if column.name != "id"]
    problems = [problem for name in columns for problem in _problems(rows, name, None)]
    assert problems == []


async def test_type_decorator_bind_processing_stores_comma_joined_text(database: Database) -> None:
    """The TypeDecorator's bind processor runs: raw SQL sees the comma-joined text."""
    await database.execute(kitchen_sink.insert(), {"tags": ["a", "b", "c"]})
    assert await database.fetch_val("SELECT tags FROM kitchen_sink") == "a,b,c"


async def test_enum_is_stored_by_name(database: Database) -> None:
    """sqlalchemy.Enum over a Python enum stores the member name, as SQLAlchemy does."""
    await database.execute(kitchen_sink.insert(), {"mood": Mood.so_so})
    assert await database.fetch_val("SELECT mood FROM kitchen_sink") == "so_so"


async def test_aware_datetime_filter_matches_the_same_instant_in_another_zone(
    database: Database,
) -> None:
    """A WHERE on a timezone-aware column finds the row when given the same instant elsewhere."""
    stored = dt.datetime(2024, 5, 6, 12, 0, tzinfo=PLUS_TWO)
    await database.execute(kitchen_sink.insert(), {"id": 7, "aware": stored})
    same_instant = stored.astimezone(MINUS_FIVE)
    query = select(kitchen_sink.c.id).where(kitchen_sink.c.aware == same_instant)
    assert await database.fetch_val(query) == 7


async def test_core_update_with_values_converts_types(database: Database) -> None:
    """An update with a values dict runs the column types' bind processing."""
    await database.execute(kitchen_sink.insert(), {"id": 1, "mood": Mood.happy})
    await database.execute(
        kitchen_sink.update().where(kitchen_sink.c.id == 1),
        {"mood": Mood.sad, "payload": {"k": [1, 2]}, "tags": ["x"]},
    )
    row = await database.fetch_one(kitchen_sink.select())
    assert row is not None
    assert row["mood"] is Mood.sad
    assert row["payload"] == {"k": [1, 2]}
    assert row["tags"] == ["x"]


async def test_execute_many_converts_every_row(database: Database) -> None:
    """execute_many runs bind processing for each row of values."""
    values = [
        {"mood": Mood.happy, "numeric": Decimal("1.5"), "date": dt.date(2024, 1, 1)},
        {"mood": Mood.sad, "numeric": Decimal("2.25"), "date": dt.date(2024, 1, 2)},
    ]
    await database.execute_many(kitchen_sink.insert(), values)
    rows = await database.fetch_all(
        select(kitchen_sink.c.mood, kitchen_sink.c.numeric, kitchen_sink.c.date).order_by(
            kitchen_sink.c.id
        )
    )
    assert [dict(row) for row in rows] == values
    assert all(isinstance(row["numeric"], Decimal) for row in rows)


async def test_sql_function_result_keeps_the_column_type(database: Database) -> None:
    """func.max over a Date column comes back as a date, typed by SQLAlchemy."""
    await database.execute_many(
        kitchen_sink.insert(), [{"date": dt.date(2024, 1, d)} for d in (3, 9, 5)]
    )
    assert await database.fetch_val(select(func.max(kitchen_sink.c.date))) == dt.date(2024, 1, 9)


async def test_typed_text_query_converts_its_columns(database: Database) -> None:
    """text(...).columns(date=Date) converts the raw column to a date."""
    await database.execute(kitchen_sink.insert(), {"date": dt.date(2023, 7, 14)})
    query = text("SELECT date FROM kitchen_sink").columns(date=Date)
    row = await database.fetch_one(query)
    assert row is not None
    assert row["date"] == dt.date(2023, 7, 14)
    assert type(row["date"]) is dt.date


async def test_labelled_typed_column_is_converted(database: Database) -> None:
    """A labelled Numeric column still comes back as Decimal."""
    await database.execute(kitchen_sink.insert(), {"numeric": Decimal("3.1416")})
    row = await database.fetch_one(select(kitchen_sink.c.numeric.label("pi")))
    assert row is not None
    assert row.pi == Decimal("3.1416")
    assert isinstance(row.pi, Decimal)


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
async def test_every_type_round_trips_through_insert_values(
    database: Database, case: tuple[str, Any, Any]
) -> None:
    """``table.insert().values(column=value)``, built afresh per call as databases users do,
    binds each type as ``execute(table.insert(), values)`` does."""
    column, written, expected = case
    await database.execute(kitchen_sink.insert().values(id=1, **{column: written}))
    await database.execute(kitchen_sink.insert().values(**{column: written, "id": 2}))
    query = select(kitchen_sink.c[column]).order_by(kitchen_sink.c.id)
    got = [row[0] for row in await database.fetch_all(query)]
    for value in got:
        assert _mismatch(value, expected) is None, _mismatch(value, expected)
