"""Query methods: fetch_all, fetch_one, fetch_val, execute, execute_many, iterate."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import pytest
import sqlalchemy
from sqlalchemy import bindparam, func, select, text
from sqlalchemy.schema import CreateTable, DropTable

import aiodatabases
from aiodatabases import Database
from aiodatabases._compiler import Compiler
from aiodatabases.backends.sqlite import SQLiteDialect

from .tables import defaults, notes, users

THREE_NOTES = [
    {"text": "alpha", "completed": False},
    {"text": "beta", "completed": True},
    {"text": "gamma", "completed": False},
]


async def _three_notes(database: Database) -> None:
    await database.execute_many(notes.insert(), THREE_NOTES)


async def test_fetch_all_returns_every_row_in_order(database: Database) -> None:
    """fetch_all returns a list with one record per row, in the query's order."""
    await _three_notes(database)
    rows = await database.fetch_all(notes.select().order_by(notes.c.id.desc()))
    assert isinstance(rows, list)
    assert [row["text"] for row in rows] == ["gamma", "beta", "alpha"]


async def test_fetch_all_of_empty_table_is_an_empty_list(database: Database) -> None:
    """fetch_all on no rows returns []."""
    assert await database.fetch_all(notes.select()) == []


async def test_fetch_one_returns_the_first_row(database: Database) -> None:
    """fetch_one returns the first row of the result."""
    await _three_notes(database)
    row = await database.fetch_one(notes.select().order_by(notes.c.id))
    assert row is not None
    assert row["text"] == "alpha"


async def test_fetch_one_returns_none_when_no_row_matches(database: Database) -> None:
    """fetch_one returns None for an empty result."""
    assert await database.fetch_one(notes.select().where(notes.c.id == 99)) is None


async def test_fetch_val_returns_the_first_column_by_default(database: Database) -> None:
    """fetch_val returns column 0 of the first row."""
    await _three_notes(database)
    assert await database.fetch_val(select(func.count()).select_from(notes)) == 3


async def test_fetch_val_takes_a_column_index_or_name(database: Database) -> None:
    """fetch_val(column=1) and fetch_val(column="text") pick that column."""
    await _three_notes(database)
    query = notes.select().where(notes.c.id == 2)
    assert await database.fetch_val(query, column=1) == "beta"
    assert await database.fetch_val(query, column="text") == "beta"
    assert await database.fetch_val(query, column=2) is True


async def test_fetch_val_returns_none_when_no_row_matches(database: Database) -> None:
    """fetch_val returns None for an empty result."""
    assert await database.fetch_val(notes.select().where(notes.c.id == 99)) is None


async def test_raw_sql_with_named_parameters(database: Database) -> None:
    """A raw SQL string with :name parameters is filled from values."""
    await _three_notes(database)
    rows = await database.fetch_all(
        "SELECT text FROM notes WHERE completed = :done AND id > :min_id ORDER BY id",
        {"done": False, "min_id": 1},
    )
    assert [row["text"] for row in rows] == ["gamma"]


async def test_raw_sql_parameter_used_twice(database: Database) -> None:
    """The same :name appearing twice in raw SQL is bound both times."""
    assert await database.fetch_val("SELECT :n + :n", {"n": 21}) == 42


async def test_text_clause_with_values(database: Database) -> None:
    """A text() clause's :name parameters are filled from values."""
    assert await database.fetch_val(text("SELECT :a * :b"), {"a": 6, "b": 7}) == 42


async def test_text_clause_with_bound_parameters(database: Database) -> None:
    """A text() clause with .bindparams() runs without values."""
    assert await database.fetch_val(text("SELECT :a + 1").bindparams(a=41)) == 42


async def test_core_select_with_where_clause(database: Database) -> None:
    """A Core select with a literal comparison binds its parameter."""
    await _three_notes(database)
    rows = await database.fetch_all(select(notes.c.text).where(notes.c.completed.is_(True)))
    assert [row.text for row in rows] == ["beta"]


async def test_core_select_with_bindparam_filled_from_values(database: Database) -> None:
    """A Core select with bindparam("note_id") takes its value from values."""
    await _three_notes(database)
    query = select(notes.c.text).where(notes.c.id == bindparam("note_id"))
    assert await database.fetch_val(query, {"note_id": 3}) == "gamma"


async def test_execute_insert_returns_the_new_primary_key(database: Database) -> None:
    """execute(insert) returns the new row's id: 1 then 2 on a fresh table."""
    first = await database.execute(notes.insert(), {"text": "a", "completed": False})
    second = await database.execute(notes.insert().values(text="b", completed=True))
    assert (first, second) == (1, 2)


async def test_execute_raw_insert_returns_the_new_primary_key(database: Database) -> None:
    """A raw SQL insert also returns the new row's id."""
    await database.execute(notes.insert(), {"text": "a", "completed": False})
    new_id = await database.execute(
        "INSERT INTO notes (text, completed) VALUES (:text, :completed)",
        {"text": "b", "completed": True},
    )
    assert new_id == 2
    assert new_id == await database.fetch_val("SELECT id FROM notes WHERE text = 'b'")


async def test_execute_update_returns_the_number_of_rows_changed(database: Database) -> None:
    """execute(update) returns how many rows it changed."""
    await _three_notes(database)
    count = await database.execute(
        notes.update().where(notes.c.completed.is_(False)).values(completed=True)
    )
    assert count == 2


async def test_execute_delete_returns_the_number_of_rows_deleted(database: Database) -> None:
    """execute(delete) returns how many rows it deleted, 0 when none matched."""
    await _three_notes(database)
    assert await database.execute(notes.delete().where(notes.c.id > 1)) == 2
    assert await database.execute(notes.delete().where(notes.c.id > 1)) == 0
    assert await database.execute("DELETE FROM notes WHERE id = :id", {"id": 1}) == 1


async def test_execute_insert_returning_returns_the_first_returned_value(
    database: Database,
) -> None:
    """execute(insert().returning(col)) returns that column's value, not the row id."""
    value = await database.execute(
        notes.insert().returning(notes.c.text), {"text": "returned", "completed": False}
    )
    assert value == "returned"


async def test_core_insert_values_act_like_values_call(database: Database) -> None:
    """execute(table.insert(), values) inserts exactly those column values."""
    await database.execute(notes.insert(), {"id": 5, "text": "hello", "completed": True})
    row = await database.fetch_one(notes.select())
    assert row is not None
    assert dict(row) == {"id": 5, "text": "hello", "completed": True}


@pytest.mark.parametrize(
    "build",
    [
        lambda: notes.insert().values(text="a", completed=True),
        lambda: notes.insert().values(completed=False, text="b"),
        lambda: notes.insert().values({notes.c.text: "c", notes.c.completed: True}),
        lambda: notes.insert().values(text="d").values(completed=False),
        lambda: defaults.insert().values(scalar="e"),
    ],
    ids=["in-order", "reordered", "column-keys", "values-twice", "python-defaults"],
)
def test_a_plain_insert_binds_its_literals_in_sqlalchemys_order(build: Any) -> None:
    """``insert().values(...)`` skips SQLAlchemy's cache key and binds the statement's own
    literals: in the order of that key, so they fill the SQL compiled for another such insert."""
    compiler = Compiler(SQLiteDialect(paramstyle="qmark"))
    first, second = build(), build()
    plain = compiler._plain_insert(first, False)
    assert plain is not None
    entry, compiled, extracted, _ = plain
    assert extracted == list(first._generate_cache_key().bindparams)
    again = compiler._plain_insert(second, False)
    assert again is not None
    assert again[0] is entry
    sql, args = compiler.core_args(entry, compiled, again[2], None)
    expected = second.compile(dialect=compiler.dialect)
    assert sql == expected.string
    if second.table is not defaults:  # (a generated default differs from call to call)
        assert args == [expected.params[name] for name in expected.positiontup or ()]


@pytest.mark.parametrize(
    "statement",
    [
        notes.insert().values(text="x", completed=True).returning(notes.c.id),
        notes.insert().values(text="x", completed=True).prefix_with("OR IGNORE"),
        notes.insert().values(text=sqlalchemy.literal("x", sqlalchemy.String), completed=True),
        notes.insert().values(text=func.lower("X"), completed=True),
        notes.insert().values(text=bindparam("given"), completed=True),
        notes.insert().values(text="x", completed=True).inline(),
        notes.insert(),
        notes.insert().from_select(["text", "completed"], select(notes.c.text, notes.c.completed)),
    ],
    ids=[
        "returning",
        "prefix",
        "typed-literal",
        "sql-expression",
        "named-bindparam",
        "inline",
        "no-values",
        "from-select",
    ],
)
def test_any_other_insert_takes_sqlalchemys_cache_key(statement: Any) -> None:
    compiler = Compiler(SQLiteDialect(paramstyle="qmark"))
    assert compiler._plain_insert(statement, False) is None


def _dialects() -> list[Any]:
    """The dialect each backend compiles with (its paramstyle included)."""
    from aiodatabases.backends import _asyncpg_types
    from aiodatabases.backends._asyncmy_types import AsyncmyDialect

    return [
        SQLiteDialect(paramstyle="qmark"),
        _asyncpg_types.PostgreSQLDialect(paramstyle="numeric_dollar"),  # type: ignore[no-untyped-call]
        AsyncmyDialect(paramstyle="format"),
    ]


_odd = sqlalchemy.Table(
    "odd names",
    sqlalchemy.MetaData(),
    sqlalchemy.Column("id", sqlalchemy.Integer, primary_key=True),
    sqlalchemy.Column("a.b [c]", sqlalchemy.String(20)),
    sqlalchemy.Column("when", sqlalchemy.DateTime(timezone=True)),
    sqlalchemy.Column("payload", sqlalchemy.JSON),
)
_AT = dt.datetime(2026, 11, 30, 1, 2, 3, tzinfo=dt.UTC)

_REQUIRED = object()


class _GeneralCompiler(Compiler):
    """Compiles every select through SQLAlchemy's cache key: what a plain select must match."""

    def _plain_select(self, stmt: Any, many: bool) -> None:
        return None


def _general(dialect: Any, statement: Any) -> Any:
    """The SQL and bound arguments of ``statement`` on the general path."""
    return _GeneralCompiler(dialect).prepare(statement, None)[1:]


#: Selects built afresh the way application code writes them (n: the literal of the call).
_PLAIN_SELECTS: list[Any] = [
    lambda n: notes.select().where(notes.c.id == n),
    lambda n: select(notes).where(notes.c.id != n),
    lambda n: select(notes).where(notes.c.id > n, notes.c.text <= f"t{n}"),
    lambda n: select(notes).where(notes.c.text >= f"t{n}").where(notes.c.id >= n),
    lambda n: select(notes.c.text, notes.c.id).where(notes.c.id < n),
    lambda n: select(notes, users).where(users.c.name == f"u{n}"),
    lambda n: select(notes).order_by(notes.c.id).limit(n),
    lambda n: select(notes).order_by(notes.c.id.desc()).limit(n).offset(n * 2),
    lambda n: select(notes).order_by(notes.c.completed.asc(), notes.c.id).offset(n),
    lambda n: select(notes).where(notes.c.id > n).order_by(notes.c.id.desc()).limit(20),
    lambda n: select(notes).limit(n).where(notes.c.text == f"t{n}"),
    lambda n: select(_odd).where(_odd.c["a.b [c]"] == f"o{n}", _odd.c.when > _AT),
    lambda n: select(notes).where(~(notes.c.id == n)),
    lambda n: select(notes),
]


@pytest.mark.parametrize("build", _PLAIN_SELECTS)
def test_a_plain_select_binds_its_literals_in_sqlalchemys_order(build: Any) -> None:
    """A plain select skips SQLAlchemy's cache key and binds the statement's own literals, in
    the order of that key, so they fill the SQL compiled for another such select; on every
    backend's dialect the SQL and arguments are SQLAlchemy's own."""
    for dialect in _dialects():
        compiler = Compiler(dialect)
        first, second = build(1), build(2)
        plain = compiler._plain_select(first, False)
        assert plain is not None
        entry, _, extracted, _ = plain
        assert extracted == list(first._generate_cache_key().bindparams)
        again = compiler._plain_select(second, False)
        assert again is not None
        assert again[0] is entry
        sql, args = compiler.core_args(entry, again[1], again[2], None)
        assert sql == second.compile(dialect=dialect).string
        assert (sql, args) == _general(dialect, build(2))


def test_plain_selects_of_different_shapes_never_share_sql() -> None:
    """Every plain select, compiled after all the others through one cache, gets the SQL and
    arguments SQLAlchemy compiles for it alone (operators, orderings, tables, columns, literal
    types, LIMIT and OFFSET each tell them apart)."""
    other_notes = sqlalchemy.Table(
        "notes",
        sqlalchemy.MetaData(),
        sqlalchemy.Column("id", sqlalchemy.Integer, primary_key=True),
        sqlalchemy.Column("text", sqlalchemy.Text),
        sqlalchemy.Column("completed", sqlalchemy.Boolean),
        schema="archive",
    )
    shapes = [
        *_PLAIN_SELECTS,
        *(
            lambda n, op=op: select(notes).where(op(notes.c.id, n))
            for op in (
                lambda a, b: a == b,
                lambda a, b: a != b,
                lambda a, b: a < b,
                lambda a, b: a <= b,
                lambda a, b: a > b,
                lambda a, b: a >= b,
            )
        ),
        lambda n: select(other_notes).where(other_notes.c.id == n),
        lambda n: select(other_notes).where(other_notes.c.text == f"t{n}"),
        lambda n: select(notes).where(notes.c.text == f"t{n}"),
        lambda n: select(notes).order_by(notes.c.id.asc()).limit(n),
        lambda n: select(notes).order_by(notes.c.text).limit(n),
        lambda n: select(notes).order_by(notes.c.id).offset(n),
        lambda n: select(notes).order_by(notes.c.id).limit(n).offset(n),
        lambda n: select(notes.c.id).where(notes.c.id == n),
        lambda n: select(notes.c.id, notes.c.text).where(notes.c.id == n),
    ]
    for dialect in _dialects():
        compiler = Compiler(dialect)
        for n in (1, 2):
            for build in shapes:
                got = compiler.prepare(build(n), None)[1:]
                assert got[0] == build(n).compile(dialect=dialect).string
                assert got == _general(dialect, build(n))
        assert all(compiler._plain_select(build(3), False) is not None for build in shapes)


@pytest.mark.parametrize(
    "statement",
    [
        select(notes).where(sqlalchemy.and_(notes.c.id == 1, notes.c.text == "x")),
        select(notes).where(sqlalchemy.or_(notes.c.id == 1, notes.c.id == 2)),
        select(notes).where(notes.c.text.like("x%")),
        select(notes).where(notes.c.id.in_([1, 2])),
        select(notes).where(notes.c.text.is_(None)),
        select(notes).where(notes.c.id == bindparam("wanted")),
        select(notes).where(notes.c.id == notes.c.id),
        select(notes).where(func.lower(notes.c.text) == "x"),
        select(notes).where(notes.c.id == sqlalchemy.literal(1, sqlalchemy.BigInteger) + 1),
        select(notes).where(text("id = 1")),
        select(notes).join(users, users.c.id == notes.c.id),
        select(notes).group_by(notes.c.completed),
        select(notes).distinct(),
        select(notes).with_for_update(),
        select(notes).execution_options(yield_per=10),
        select(notes).prefix_with("SQL_NO_CACHE"),
        select(notes).order_by(notes.c.id.desc().nulls_last()),
        select(notes).order_by(text("id")),
        select(notes).limit(sqlalchemy.literal_column("5")),
        select(notes).fetch(5),
        select(notes.c.id.label("ident")),
        select(func.count()).select_from(notes),
        select(notes).subquery().select(),
        select(notes).where(notes.c.id == 1).union(select(notes)),
    ],
    ids=[
        "and",
        "or",
        "like",
        "in",
        "is-null",
        "named-bindparam",
        "column-to-column",
        "function",
        "expression-literal",
        "text-where",
        "join",
        "group-by",
        "distinct",
        "for-update",
        "execution-options",
        "prefix",
        "nulls-last",
        "text-order",
        "sql-limit",
        "fetch",
        "label",
        "count",
        "subquery",
        "union",
    ],
)
def test_any_other_select_takes_sqlalchemys_cache_key(statement: Any) -> None:
    compiler = Compiler(SQLiteDialect(paramstyle="qmark"))
    assert compiler._plain_select(statement, False) is None


def test_a_select_whose_literals_sqlalchemy_binds_otherwise_takes_its_cache_key() -> None:
    """One comparison used twice holds one literal, which SQLAlchemy's key binds once: the
    plain path sees two, so that shape keeps the general path, and binds it correctly."""
    compiler = Compiler(SQLiteDialect(paramstyle="qmark"))

    def build(n: int) -> Any:
        same = notes.c.id == n
        return select(notes).where(same, same)

    assert compiler._plain_select(build(1), False) is None
    assert compiler._plain_select(build(2), False) is None
    assert compiler.prepare(build(3), None)[1:] == _general(compiler.dialect, build(3))


def _twice(first: Any, second: Any) -> Any:
    """``id = :w OR id > :w``, each ``:w`` a parameter of its own with this value, or none
    (``_REQUIRED``)."""

    def one(value: Any) -> Any:
        if value is _REQUIRED:
            return bindparam("w", type_=sqlalchemy.Integer)
        return bindparam("w", value=value, type_=sqlalchemy.Integer)

    return sqlalchemy.or_(notes.c.id == one(first), notes.c.id > one(second))


def _guarded(n: int) -> Any:
    """A row to insert, only while no note has its text (the name ``t`` used twice)."""
    text = bindparam("t", value=f"g{n}", type_=sqlalchemy.String)
    taken = sqlalchemy.exists().where(notes.c.text == bindparam("t", value=f"g{n}"))
    return select(text, sqlalchemy.literal(True)).where(~taken)


#: (statement builder, values, whether the cached plan serves it)
_BIND_CASES: list[tuple[Any, Any, bool]] = [
    (lambda n: select(notes).where(notes.c.id == n), None, True),
    (lambda n: select(notes).where(notes.c.id > n, notes.c.text != f"t{n}"), None, True),
    (lambda n: select(notes).where(notes.c.id == bindparam("wanted")), {"wanted": 3}, True),
    (lambda n: select(notes).where(notes.c.id == bindparam("wanted", value=n)), None, True),
    (
        lambda n: select(notes).where(notes.c.id == bindparam("wanted", value=n)),
        {"wanted": 9},
        True,
    ),
    (lambda n: select(notes).where(notes.c.id == bindparam("wanted")), None, True),  # required
    (lambda n: select(notes).where(notes.c.id == bindparam("w", callable_=lambda: n)), None, False),
    (lambda n: select(notes).where(notes.c.id.in_([n, n + 1])), None, False),
    (lambda n: notes.update().where(notes.c.id == n), {"text": "B", "completed": True}, True),
    (lambda n: notes.update().where(notes.c.id == n).values(text=f"v{n}"), None, True),
    (lambda n: notes.delete().where(notes.c.text == f"x{n}"), None, True),
    (lambda n: notes.insert(), {"text": "t", "completed": False}, True),
    (lambda n: notes.insert(), {"text": "t"}, True),  # completed is required
    (lambda n: defaults.insert(), {"scalar": "s"}, False),  # Python defaults: the general path
    (lambda n: _odd.update().where(_odd.c.id == n), {"a.b [c]": "o", "when": _AT}, True),
    (lambda n: select(_odd).where(_odd.c["a.b [c]"] == f"o{n}", _odd.c.when > _AT), None, True),
    (lambda n: _odd.insert(), {"a.b [c]": "x", "payload": {"k": [1]}, "when": _AT}, True),
    # One name, several parameters: the caller's value, else the last one's, for all.
    (lambda n: select(notes).where(_twice(n, n)), {"w": 7}, True),
    (lambda n: select(notes).where(_twice(n, n + 1)), None, True),
    (lambda n: select(notes).where(_twice(n, None)), None, True),
    (lambda n: select(notes).where(_twice(_REQUIRED, n)), None, True),  # required
    (lambda n: select(notes).where(_twice(n, _REQUIRED)), None, True),  # required
    (lambda n: select(notes).where(_twice(_REQUIRED, _REQUIRED)), {"w": 5}, True),
    (lambda n: notes.insert().from_select(["text", "completed"], _guarded(n)), None, True),
    (lambda n: notes.insert().from_select(["text", "completed"], _guarded(n)), {"t": "g"}, True),
]


@pytest.mark.parametrize("dialect", _dialects(), ids=["sqlite", "postgresql", "mysql"])
@pytest.mark.parametrize(("build", "values", "planned"), _BIND_CASES)
def test_cached_core_statements_bind_as_sqlalchemy_does(
    dialect: Any, build: Any, values: Any, planned: bool
) -> None:
    """A Core statement built afresh binds, through the plan cached with its compilation, the
    same SQL and values (or raises the same error) as SQLAlchemy's ``construct_params()``."""
    compiler = Compiler(dialect)

    def outcome(n: int) -> Any:
        try:
            return compiler.prepare(build(n), values)[1:]
        except aiodatabases.ProgrammingError as exc:
            return ("error", str(exc))

    outcome(1)  # compiles and caches
    entry = compiler.core(build(2), values)[0]
    assert (entry.bind_plan is not None) is planned
    got = [outcome(n) for n in (2, 3)]
    entry.bind_plan = None  # the general path: SQLAlchemy's construct_params()
    assert got == [outcome(n) for n in (2, 3)]


async def test_columns_with_odd_names_take_values_by_their_names(database: Database) -> None:
    """Columns whose names SQLAlchemy escapes in bind names ("a.b [c]") take values given by
    the column's name, in an insert, an update and a query, built afresh each time."""
    await database.execute(CreateTable(_odd))
    try:
        for n in (1, 2):
            await database.execute(_odd.insert(), {"id": n, "a.b [c]": f"o{n}", "when": _AT})
        await database.execute(
            _odd.update().where(_odd.c.id == 2), {"a.b [c]": "changed", "payload": {"k": [1]}}
        )
        for n in (1, 2):
            await database.execute(
                _odd.update().where(_odd.c.id == n).values({_odd.c["a.b [c]"]: f"v{n}"})
            )
        rows = await database.fetch_all(
            select(_odd).where(_odd.c.when >= _AT, _odd.c["a.b [c]"] != "x").order_by(_odd.c.id)
        )
        assert [(row["id"], row["a.b [c]"], row["when"], row["payload"]) for row in rows] == [
            (1, "v1", _AT, None),
            (2, "v2", _AT, {"k": [1]}),
        ]
    finally:
        await database.execute(DropTable(_odd))


async def test_plain_selects_built_afresh_each_find_their_own_rows(database: Database) -> None:
    """Selects of one table that differ only in an operator, an ordering or a bound each get
    their own SQL from the cache, called in turn with new literals."""
    await database.execute_many(
        notes.insert(), [{"id": i, "text": f"t{i}", "completed": i % 2 == 0} for i in range(1, 8)]
    )

    async def ids(statement: Any) -> list[int]:
        return [row["id"] for row in await database.fetch_all(statement)]

    for n in (3, 5):
        assert await ids(select(notes).where(notes.c.id == n)) == [n]
        assert await ids(select(notes).where(notes.c.id != n).order_by(notes.c.id)) == [
            i for i in range(1, 8) if i != n
        ]
        assert await ids(select(notes).where(notes.c.id < n).order_by(notes.c.id.desc())) == list(
            range(n - 1, 0, -1)
        )
        assert await ids(select(notes).where(notes.c.id >= n).order_by(notes.c.id)) == list(
            range(n, 8)
        )
        assert await ids(select(notes).order_by(notes.c.id).limit(n)) == list(range(1, n + 1))
        assert await ids(select(notes).order_by(notes.c.id.desc()).limit(2).offset(n)) == [
            7 - n,
            6 - n,
        ]
        assert await ids(select(notes).where(notes.c.text == f"t{n}")) == [n]
        row = await database.fetch_one(select(notes.c.text, notes.c.id).where(notes.c.id == n))
        assert row is not None
        assert list(row.keys()) == ["text", "id"]
        assert list(row.values()) == [f"t{n}", n]


async def test_plain_inserts_of_different_columns_write_what_each_names(database: Database) -> None:
    """Inserts built afresh with different columns, orders and values each write their own."""
    await database.execute(notes.insert().values(id=1, text="one", completed=True))
    await database.execute(notes.insert().values(completed=False, text="two", id=2))
    await database.execute(notes.insert().values(text="three", id=3, completed=True))
    await database.execute(notes.insert().values(id=4, text="four", completed=False))
    rows = await database.fetch_all(notes.select().order_by(notes.c.id))
    assert [tuple(row.values()) for row in rows] == [
        (1, "one", True),
        (2, "two", False),
        (3, "three", True),
        (4, "four", False),
    ]
    generated = await database.execute(defaults.insert().values(scalar="given"))
    row = await database.fetch_one(defaults.select().where(defaults.c.id == generated))
    assert row is not None
    assert row["scalar"] == "given"
    assert row["generated"]


async def test_core_update_values_change_only_the_given_columns(database: Database) -> None:
    """execute(update().where(...), values) sets those columns on the matching rows only."""
    await _three_notes(database)
    count = await database.execute(notes.update().where(notes.c.id == 2), {"text": "BETA"})
    assert count == 1
    rows = await database.fetch_all(notes.select().order_by(notes.c.id))
    assert [(row.text, row.completed) for row in rows] == [
        ("alpha", False),
        ("BETA", True),
        ("gamma", False),
    ]


async def test_core_insert_applies_column_defaults(database: Database) -> None:
    """A Core insert fills scalar and callable Python-side column defaults, as SQLAlchemy does."""
    await database.execute(defaults.insert(), {"id": 1})
    row = await database.fetch_one(defaults.select())
    assert row is not None
    assert row["scalar"] == "unnamed"
    assert row["generated"] == "generated by a callable"


async def test_execute_many_inserts_every_row(database: Database) -> None:
    """execute_many with a Core insert inserts one row per values dict."""
    await database.execute_many(
        notes.insert(), [{"text": f"note {i}", "completed": i % 2 == 1} for i in range(100)]
    )
    assert await database.fetch_val(select(func.count()).select_from(notes)) == 100
    assert await database.fetch_val(select(func.count()).where(notes.c.completed.is_(True))) == 50


async def test_execute_many_with_raw_sql(database: Database) -> None:
    """execute_many with a raw SQL string binds each values dict."""
    await database.execute_many(
        "INSERT INTO notes (text, completed) VALUES (:text, :completed)", THREE_NOTES
    )
    rows = await database.fetch_all("SELECT text FROM notes ORDER BY id")
    assert [row[0] for row in rows] == ["alpha", "beta", "gamma"]


@pytest.mark.parametrize(
    ("later_row", "message"),
    [
        ({"text": "beta"}, "no value for :completed"),
        ({"text": "beta", "completed": False, "done": True}, "does not have: :done"),
    ],
    ids=["missing key", "extra key"],
)
async def test_execute_many_with_raw_sql_checks_every_row_as_execute_does(
    database: Database, later_row: dict[str, object], message: str
) -> None:
    """Every row of a raw SQL execute_many must name exactly the statement's parameters, not
    only the first; a row that does not is refused before anything is written."""
    rows = [{"text": "alpha", "completed": False}, later_row, {"text": "gamma", "completed": True}]
    with pytest.raises(aiodatabases.ProgrammingError, match=message):
        await database.execute_many(
            "INSERT INTO notes (text, completed) VALUES (:text, :completed)", rows
        )
    assert await database.fetch_all(notes.select()) == []


async def test_execute_many_updates_with_bindparams(database: Database) -> None:
    """execute_many with an update keyed by bindparam changes every targeted row."""
    await _three_notes(database)
    query = notes.update().where(notes.c.id == bindparam("note_id")).values(text=bindparam("new"))
    await database.execute_many(query, [{"note_id": 1, "new": "A"}, {"note_id": 3, "new": "C"}])
    rows = await database.fetch_all(select(notes.c.text).order_by(notes.c.id))
    assert [row.text for row in rows] == ["A", "beta", "C"]


async def test_execute_many_with_no_rows_inserts_nothing(database: Database) -> None:
    """execute_many with an empty list is a no-op, not an error."""
    await database.execute_many(notes.insert(), [])
    assert await database.fetch_all(notes.select()) == []


async def test_execute_many_is_atomic_when_a_row_fails(database: Database) -> None:
    """When one row of execute_many violates a constraint, none of the rows are inserted."""
    rows = [
        {"id": 1, "text": "one", "completed": False},
        {"id": 2, "text": "two", "completed": False},
        {"id": 1, "text": "duplicate", "completed": False},
        {"id": 3, "text": "three", "completed": False},
    ]
    with pytest.raises(aiodatabases.IntegrityError):
        await database.execute_many(notes.insert(), rows)
    assert await database.fetch_all(notes.select()) == []
    await database.execute_many(notes.insert(), rows[:2])
    assert await database.fetch_val(select(func.count()).select_from(notes)) == 2


async def test_iterate_yields_every_row_in_order(database: Database) -> None:
    """iterate() yields each record of the result in order."""
    await database.execute_many(
        notes.insert(), [{"text": f"n{i:04d}", "completed": False} for i in range(1000)]
    )
    texts = [row["text"] async for row in database.iterate(notes.select().order_by(notes.c.id))]
    assert texts == [f"n{i:04d}" for i in range(1000)]


async def test_iterate_raw_sql_with_values(database: Database) -> None:
    """iterate() takes a raw SQL string and values."""
    await _three_notes(database)
    rows = [
        row.text
        async for row in database.iterate(
            "SELECT text FROM notes WHERE id >= :first ORDER BY id", {"first": 2}
        )
    ]
    assert rows == ["beta", "gamma"]


async def test_iterate_of_empty_result_yields_nothing(database: Database) -> None:
    """iterate() over no rows ends at once."""
    assert [row async for row in database.iterate(notes.select())] == []


@pytest.mark.timeout(30)
async def test_breaking_out_of_iterate_leaves_the_database_usable(
    database: Database, database_url: str
) -> None:
    """Leaving iterate() early releases its connection: the one-connection pool still serves."""
    async with Database(database_url, max_size=1, pool_timeout=2) as single:
        await single.execute_many(notes.insert(), THREE_NOTES * 10)
        for _ in range(5):
            async for row in single.iterate(notes.select()):
                assert row["text"] == "alpha"
                break
        assert await single.fetch_val(select(func.count()).select_from(notes)) == 30


async def test_queries_through_an_explicit_connection(database: Database) -> None:
    """A Connection offers the same query methods as Database."""
    async with database.connection() as connection:
        assert await connection.execute(notes.insert(), THREE_NOTES[0]) == 1
        await connection.execute_many(notes.insert(), THREE_NOTES[1:])
        assert len(await connection.fetch_all(notes.select())) == 3
        row = await connection.fetch_one(notes.select().where(notes.c.id == 2))
        assert row is not None
        assert row.text == "beta"
        assert await connection.fetch_val(select(notes.c.text).where(notes.c.id == 3)) == "gamma"
        assert [r.id async for r in connection.iterate(notes.select().order_by(notes.c.id))] == [
            1,
            2,
            3,
        ]
    assert await database.fetch_val(select(func.count()).select_from(notes)) == 3


async def test_ddl_statements_run_through_execute(database: Database) -> None:
    """CreateTable, DDL() and DropTable run through execute and take effect."""
    scratch = sqlalchemy.Table(
        "scratch",
        sqlalchemy.MetaData(),
        sqlalchemy.Column("id", sqlalchemy.Integer, primary_key=True),
        sqlalchemy.Column("name", sqlalchemy.String(20)),
    )
    await database.execute(CreateTable(scratch))
    # SQLAlchemy ships DDL() without annotations.
    create_index = sqlalchemy.DDL("CREATE INDEX ix_scratch_name ON scratch (name)")  # type: ignore[no-untyped-call]
    await database.execute(create_index)
    await database.execute(scratch.insert(), {"name": "x"})
    assert await database.fetch_val(select(scratch.c.name)) == "x"
    await database.execute(DropTable(scratch))
    with pytest.raises(aiodatabases.DatabaseError):
        await database.fetch_all(select(scratch))


async def test_query_log_never_shows_parameter_values(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """With aiodatabases logging at DEBUG, bound values (passwords, say) never reach the log."""
    with caplog.at_level(logging.DEBUG, logger="aiodatabases"):
        await database.fetch_val("SELECT :secret_value", {"secret_value": "hunter2-secret"})
        await database.execute(notes.insert(), {"text": "hunter2-note", "completed": False})
    assert "hunter2" not in caplog.text


async def test_literal_percent_in_raw_sql_is_kept(database: Database) -> None:
    """SELECT '100%' returns the text 100% unchanged."""
    assert await database.fetch_val("SELECT '100%'") == "100%"


@pytest.mark.parametrize(
    ("sql", "values", "expected"),
    [
        ("SELECT '100%' || :suffix", {"suffix": "!"}, "100%!"),
        ("SELECT '%s'", None, "%s"),
        ("SELECT '%(name)s'", None, "%(name)s"),
        ("SELECT '%%'", None, "%%"),
        ("SELECT :value || '%'", {"value": "50"}, "50%"),
    ],
)
async def test_percent_signs_survive_with_and_without_parameters(
    database: Database,
    database_url: str,
    sql: str,
    values: dict[str, str] | None,
    expected: str,
) -> None:
    """Percent signs in literals are never taken for driver placeholders."""
    if database_url.startswith("mysql") and "||" in sql:
        # MySQL's || is logical OR (unless sql_mode has PIPES_AS_CONCAT): concatenate with
        # CONCAT() there, keeping the same literals and parameters.
        left, right = (part.strip() for part in sql.removeprefix("SELECT ").split("||"))
        sql = f"SELECT CONCAT({left}, {right})"
    assert await database.fetch_val(sql, values) == expected


async def test_like_pattern_with_percent_and_parameter(database: Database) -> None:
    """A LIKE '%...' literal next to a :name parameter filters correctly."""
    await _three_notes(database)
    rows = await database.fetch_all(
        "SELECT text FROM notes WHERE text LIKE '%a' AND id <> :skip ORDER BY id", {"skip": 1}
    )
    assert [row.text for row in rows] == ["beta", "gamma"]
