"""The public API's types, checked by mypy --strict (and run by pytest on SQLite memory)."""

from __future__ import annotations

from typing import Any, assert_type

import sqlalchemy as sa

import aiodatabases

metadata = sa.MetaData()
items = sa.Table("items", metadata, sa.Column("id", sa.Integer, primary_key=True))


async def test_query_methods_have_precise_return_types() -> None:
    """fetch_all is a list of records, fetch_one an optional record, execute Any."""
    async with aiodatabases.Database("sqlite://") as database:
        assert_type(await database.execute(sa.schema.CreateTable(items)), Any)
        assert_type(await database.fetch_all(items.select()), list[aiodatabases.Record])
        row = await database.fetch_one("SELECT 1 AS one")
        assert_type(row, aiodatabases.Record | None)
        assert row is not None
        assert_type(row["one"], Any)
        assert row["one"] == row[0] == row.one == 1
        transaction = database.transaction()
        assert_type(transaction, aiodatabases.Transaction)
        async with database.connection() as connection:
            assert_type(connection, aiodatabases.Connection)
            assert_type(await connection.fetch_val("SELECT 2"), Any)
