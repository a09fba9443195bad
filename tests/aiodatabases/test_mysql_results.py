"""MySQL and MariaDB results: how rows are read when the schema changes, warnings,
statements that return several results, and what a released connection keeps.

These run only when AIODATABASES_TEST_URLS names a mysql:// server.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
import sqlalchemy
from sqlalchemy import select

from aiodatabases import Database

from ..conftest import env_urls, require_reachable

_MYSQL_URLS = [url for url in env_urls() if url.split(":", 1)[0].split("+")[0] == "mysql"]

pytestmark = pytest.mark.skipif(not _MYSQL_URLS, reason="no mysql:// URL in AIODATABASES_TEST_URLS")

metadata = sqlalchemy.MetaData()
measures = sqlalchemy.Table(
    "aiodb_measures",
    metadata,
    sqlalchemy.Column("id", sqlalchemy.Integer, primary_key=True),
    sqlalchemy.Column("value", sqlalchemy.Float),
    sqlalchemy.Column("flag", sqlalchemy.Boolean),
)


@pytest.fixture
async def mysql() -> AsyncIterator[Database]:
    """A connected MySQL Database with an empty ``aiodb_measures`` table (value DOUBLE)."""
    url = _MYSQL_URLS[0]
    require_reachable(url)
    db = Database(url)
    await db.connect()
    await db.execute("DROP TABLE IF EXISTS aiodb_measures")
    await db.execute("CREATE TABLE aiodb_measures (id INT PRIMARY KEY, value DOUBLE, flag BOOLEAN)")
    try:
        yield db
    finally:
        await db.execute("DROP TABLE IF EXISTS aiodb_measures")
        await db.disconnect()


@pytest.mark.timeout(30)
async def test_float_column_reads_as_float_whether_the_server_sends_double_or_decimal(
    mysql: Database,
) -> None:
    """The same Core select gives a float while the column is DOUBLE and, after ALTER TABLE
    makes it DECIMAL (which the driver reads as Decimal), still a float; NULL stays None."""
    await mysql.execute(measures.insert(), {"id": 1, "value": 1.25, "flag": True})
    await mysql.execute(measures.insert(), {"id": 2, "value": None, "flag": False})
    query = select(measures).order_by(measures.c.id)
    rows = await mysql.fetch_all(query)
    assert [(type(r["value"]), r["value"]) for r in rows] == [(float, 1.25), (type(None), None)]
    await mysql.execute("ALTER TABLE aiodb_measures MODIFY value DECIMAL(10, 3)")
    assert isinstance(await mysql.fetch_val("SELECT value FROM aiodb_measures"), Decimal)
    for _ in range(2):  # the first read after the change, and one with the plan in place
        rows = await mysql.fetch_all(query)
        assert [(type(r["value"]), r["value"]) for r in rows] == [
            (float, 1.25),
            (type(None), None),
        ]
        record = await mysql.fetch_one(query)
        assert record is not None
        assert type(record["value"]) is float
    await mysql.execute("ALTER TABLE aiodb_measures MODIFY value DOUBLE")
    record = await mysql.fetch_one(query)
    assert record is not None
    assert type(record["value"]) is float


@pytest.mark.timeout(30)
async def test_float_typed_expression_over_decimal_literal_reads_as_float(
    mysql: Database,
) -> None:
    """A Float-typed literal MySQL evaluates as DECIMAL is converted to float."""
    query = select(sqlalchemy.literal_column("2.5", sqlalchemy.Float).label("x"))
    for _ in range(2):
        value = await mysql.fetch_val(query)
        assert type(value) is float
        assert value == 2.5


@pytest.mark.timeout(30)
async def test_boolean_and_float_columns_keep_their_types_in_iterate(mysql: Database) -> None:
    """Rows streamed by iterate() convert like fetched rows: bool for Boolean, float for
    Float."""
    await mysql.execute(measures.insert(), {"id": 1, "value": 3.0, "flag": True})
    rows = [r async for r in mysql.iterate(select(measures))]
    assert [(r["flag"], type(r["value"])) for r in rows] == [(True, float)]


@pytest.mark.timeout(30)
async def test_raw_select_star_follows_renamed_and_added_columns(mysql: Database) -> None:
    """The same raw ``SELECT *`` names the columns the table has now: after a column is
    renamed (same count), and after one is added."""
    await mysql.execute("INSERT INTO aiodb_measures VALUES (1, 0.5, TRUE)")
    sql = "SELECT * FROM aiodb_measures"
    record = await mysql.fetch_one(sql)
    assert record is not None
    assert list(record.keys()) == ["id", "value", "flag"]
    await mysql.execute("ALTER TABLE aiodb_measures RENAME COLUMN value TO amount")
    record = await mysql.fetch_one(sql)
    assert record is not None
    assert list(record.keys()) == ["id", "amount", "flag"]
    assert record["amount"] == 0.5
    await mysql.execute("ALTER TABLE aiodb_measures ADD COLUMN note VARCHAR(10) DEFAULT 'n'")
    rows = await mysql.fetch_all(sql)
    assert [dict(r) for r in rows] == [{"id": 1, "amount": 0.5, "flag": 1, "note": "n"}]


@pytest.mark.timeout(30)
async def test_server_warnings_are_logged_on_the_asyncmy_logger(
    mysql: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """A statement the server answers with a warning logs it on the ``asyncmy`` logger, as
    the driver's cursor does, and still returns its result."""
    with caplog.at_level(logging.WARNING, logger="asyncmy"):
        value = await mysql.fetch_val("SELECT CAST('12abc' AS SIGNED)")
    assert value == 12
    messages = [r.getMessage() for r in caplog.records if r.name == "asyncmy"]
    assert any("Truncated incorrect INTEGER value" in m for m in messages), messages


@pytest.mark.timeout(30)
async def test_query_after_a_statement_with_several_results_gets_its_own_rows(
    mysql: Database,
) -> None:
    """A raw string of two statements returns the first one's rows; the next query on the
    same connection returns its own rows, not the second result left unread."""
    async with mysql.connection() as connection:
        rows = await connection.fetch_all("SELECT 1 AS a; SELECT 2 AS b")
        assert [list(r.keys()) for r in rows] == [["a"]]
        assert rows[0]["a"] == 1
        assert await connection.fetch_val("SELECT 3") == 3
        await connection.execute("INSERT INTO aiodb_measures VALUES (7, 1, TRUE); SELECT 9")
        assert await connection.fetch_val("SELECT count(*) FROM aiodb_measures") == 1


@pytest.mark.timeout(30)
async def test_connection_released_inside_a_raw_transaction_is_rolled_back_before_reuse(
    mysql: Database,
) -> None:
    """A transaction opened with a raw START TRANSACTION and left open when the connection
    goes back to the pool is rolled back: the next user of the same server connection sees
    no transaction and none of its rows."""
    url = _MYSQL_URLS[0]
    async with Database(url, max_size=1) as single:
        async with single.connection() as connection:
            first_id = await connection.fetch_val("SELECT CONNECTION_ID()")
            await connection.execute("START TRANSACTION")
            await connection.execute("INSERT INTO aiodb_measures VALUES (1, 1, TRUE)")
        async with single.connection() as connection:
            assert await connection.fetch_val("SELECT CONNECTION_ID()") == first_id
            assert await connection.fetch_val("SELECT @@in_transaction") == 0
            assert await connection.fetch_val("SELECT count(*) FROM aiodb_measures") == 0


@pytest.mark.timeout(30)
async def test_connection_closed_while_idle_in_the_pool_is_replaced_before_its_next_query(
    mysql: Database,
) -> None:
    """A pooled connection whose server thread was killed while it sat idle is reconnected
    before the next query, which succeeds on a new server connection."""
    url = _MYSQL_URLS[0]
    async with Database(url, max_size=1) as single:
        first_id = await single.fetch_val("SELECT CONNECTION_ID()")
        await mysql.execute(f"KILL {int(first_id)}")
        for _ in range(50):  # the killed connection's socket sees the server hang up
            await asyncio.sleep(0.01)
        second_id = await single.fetch_val("SELECT CONNECTION_ID()")
        assert second_id != first_id
