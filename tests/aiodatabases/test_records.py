"""Record: every access form applications use, on Core and raw SQL results."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from aiodatabases import Database, Record

from .tables import notes, posts, users


async def _one_note(database: Database) -> Record:
    await database.execute(notes.insert(), {"text": "buy milk", "completed": True})
    row = await database.fetch_one(notes.select())
    assert row is not None
    return row


async def test_fetched_rows_are_records(database: Database) -> None:
    """fetch_one and fetch_all return aiodatabases.Record objects."""
    row = await _one_note(database)
    assert isinstance(row, Record)
    assert all(isinstance(item, Record) for item in await database.fetch_all(notes.select()))


async def test_record_supports_access_by_column_name(database: Database) -> None:
    """row["col"] gives the column value."""
    row = await _one_note(database)
    assert row["id"] == 1
    assert row["text"] == "buy milk"
    assert row["completed"] is True


async def test_record_supports_access_by_position(database: Database) -> None:
    """row[0], row[1], row[2] follow the select's column order, and row[-1] is the last."""
    row = await _one_note(database)
    assert (row[0], row[1], row[2]) == (1, "buy milk", True)
    assert row[-1] is True


async def test_record_supports_access_by_column_object(database: Database) -> None:
    """row[table.c.col] gives the value of that column."""
    row = await _one_note(database)
    assert row[notes.c.id] == 1
    assert row[notes.c.text] == "buy milk"
    assert row[notes.c.completed] is True


async def test_record_supports_attribute_access(database: Database) -> None:
    """row.col gives the column value."""
    row = await _one_note(database)
    assert row.id == 1
    assert row.text == "buy milk"
    assert row.completed is True


async def test_record_keys_values_and_items(database: Database) -> None:
    """keys(), values() and items() list columns and values in select order."""
    row = await _one_note(database)
    assert list(row.keys()) == ["id", "text", "completed"]
    assert list(row.values()) == [1, "buy milk", True]
    assert list(row.items()) == [("id", 1), ("text", "buy milk"), ("completed", True)]


async def test_record_length_is_the_number_of_columns(database: Database) -> None:
    """len(row) is the number of selected columns."""
    row = await _one_note(database)
    assert len(row) == 3
    partial = await database.fetch_one(select(notes.c.text))
    assert partial is not None
    assert len(partial) == 1


async def test_dict_of_record_maps_column_names_to_values(database: Database) -> None:
    """dict(row) is {column: value}, as in databases 0.9."""
    row = await _one_note(database)
    assert dict(row) == {"id": 1, "text": "buy milk", "completed": True}


async def test_iterating_a_record_yields_column_names(database: Database) -> None:
    """for key in row yields the column names, as in databases 0.9."""
    row = await _one_note(database)
    assert list(row) == ["id", "text", "completed"]
    assert [key for key in row] == ["id", "text", "completed"]


async def test_record_mapping_is_a_read_only_mapping_of_the_row(database: Database) -> None:
    """row._mapping maps names and column objects to values."""
    row = await _one_note(database)
    mapping = row._mapping
    assert mapping["text"] == "buy milk"
    assert dict(mapping) == {"id": 1, "text": "buy milk", "completed": True}
    assert list(mapping.keys()) == ["id", "text", "completed"]
    assert len(mapping) == 3


async def test_labels_become_record_keys(database: Database) -> None:
    """A labelled column is reached by its label in every access form."""
    await _one_note(database)
    row = await database.fetch_one(select(notes.c.text.label("body")))
    assert row is not None
    assert row["body"] == "buy milk"
    assert row.body == "buy milk"
    assert dict(row) == {"body": "buy milk"}


async def test_missing_key_raises_key_error(database: Database) -> None:
    """row["nope"] raises KeyError, like a mapping."""
    row = await _one_note(database)
    with pytest.raises(KeyError):
        _ = row["nope"]


async def test_missing_attribute_raises_attribute_error(database: Database) -> None:
    """row.nope raises AttributeError, so getattr(row, "nope", default) works."""
    row = await _one_note(database)
    with pytest.raises(AttributeError):
        _ = row.nope
    assert getattr(row, "nope", "fallback") == "fallback"


async def test_position_out_of_range_raises_index_error(database: Database) -> None:
    """row[99] on a three-column row raises IndexError, like a tuple."""
    row = await _one_note(database)
    with pytest.raises(IndexError):
        _ = row[99]


async def test_raw_sql_rows_support_every_access_form(database: Database) -> None:
    """A raw SQL result row offers names, positions, attributes, keys and dict()."""
    row = await database.fetch_one("SELECT 7 AS seven, 'x' AS letter")
    assert row is not None
    assert row["seven"] == 7
    assert row[1] == "x"
    assert row.letter == "x"
    assert list(row.keys()) == ["seven", "letter"]
    assert list(row.values()) == [7, "x"]
    assert dict(row) == {"seven": 7, "letter": "x"}
    assert list(row) == ["seven", "letter"]
    assert len(row) == 2


async def test_duplicate_column_names_survive_in_mapping_keys(database: Database) -> None:
    """SELECT 1 AS a, 2 AS a keeps both columns: two keys, two values, two positions."""
    row = await database.fetch_one("SELECT 1 AS a, 2 AS a")
    assert row is not None
    assert list(row._mapping.keys()) == ["a", "a"]
    assert (row[0], row[1]) == (1, 2)
    assert len(row) == 2


async def _user_with_post(database: Database) -> None:
    await database.execute(users.insert(), {"id": 1, "name": "ada"})
    await database.execute(posts.insert(), {"id": 10, "user_id": 1, "title": "notes"})


async def test_join_with_duplicate_names_is_told_apart_by_column_object(
    database: Database,
) -> None:
    """In a join selecting users.id and posts.id, row[users.c.id] and row[posts.c.id] differ."""
    await _user_with_post(database)
    query = select(users.c.id, posts.c.id, posts.c.title).select_from(
        users.join(posts, posts.c.user_id == users.c.id)
    )
    row = await database.fetch_one(query)
    assert row is not None
    assert row[users.c.id] == 1
    assert row[posts.c.id] == 10
    assert row[posts.c.title] == "notes"
    assert (row[0], row[1]) == (1, 10)


async def test_select_of_two_whole_tables_keeps_every_column(database: Database) -> None:
    """select(users, posts) over a join returns all five columns, each reachable by column."""
    await _user_with_post(database)
    query = select(users, posts).select_from(users.join(posts, posts.c.user_id == users.c.id))
    row = await database.fetch_one(query)
    assert row is not None
    assert len(row) == 5
    assert row[users.c.name] == "ada"
    assert row[posts.c.user_id] == 1
    assert row[posts.c.id] == 10


async def test_rows_from_fetch_all_and_iterate_are_equivalent(database: Database) -> None:
    """fetch_all and iterate give the same records, with the same keys and values."""
    await database.execute_many(
        notes.insert(), [{"text": f"n{i}", "completed": i % 2 == 0} for i in range(5)]
    )
    query = notes.select().order_by(notes.c.id)
    fetched = [dict(row) for row in await database.fetch_all(query)]
    iterated = [dict(row) async for row in database.iterate(query)]
    assert fetched == iterated
    assert [row["text"] for row in fetched] == ["n0", "n1", "n2", "n3", "n4"]
