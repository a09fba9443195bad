"""Listing notes: keyset and offset pagination, filters and sort orders."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import typing
import urllib.parse
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.dialects.mysql.asyncmy import MySQLDialect_asyncmy
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.engine import Dialect

import aiodatabases
from notes import repository
from notes.api import notes as notes_api
from notes.errors import BadRequestError
from notes.pagination import Cursor, Sort, decode_cursor, encode_cursor
from notes.repository import ListQuery, NotesRepository
from notes.schemas import Note, NoteFields, NotePage, NotePageFields

from .helpers import assert_problem, create_note

_DIALECTS: dict[str, Dialect] = {
    "sqlite": SQLiteDialect_pysqlite(),
    "postgresql": PGDialect_asyncpg(),  # type: ignore[no-untyped-call]
    "mysql": MySQLDialect_asyncmy(),
}

Page = dict[str, Any]


async def create_many(client: httpx.AsyncClient, notes: list[dict[str, Any]]) -> list[Page]:
    """Create notes through the batch endpoint, in order; return them."""
    created: list[Page] = []
    for start in range(0, len(notes), 100):
        response = await client.post("/api/notes/batch", json={"notes": notes[start : start + 100]})
        assert response.status_code == 201, response.text
        created.extend(response.json())
    return created


async def walk(
    client: httpx.AsyncClient, params: dict[str, Any], *, between: Any = None
) -> list[Page]:
    """Follow next_cursor from the first page to the last; return every note seen, in order."""
    seen: list[Page] = []
    cursor: str | None = None
    for _ in range(1000):
        query = dict(params) | ({"cursor": cursor} if cursor else {})
        response = await client.get("/api/notes", params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        seen.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return seen
        if between is not None:
            await between()
    raise AssertionError("pagination did not end")


async def test_empty_listing_has_no_items_and_no_cursor(client: httpx.AsyncClient) -> None:
    """GET /api/notes on no notes answers an empty page without next_cursor."""
    response = await client.get("/api/notes")
    assert response.status_code == 200
    assert response.json() == {"items": [], "next_cursor": None, "next_offset": None}
    assert "link" not in response.headers


async def test_default_page_is_20_newest_first(client: httpx.AsyncClient) -> None:
    """Without parameters, a page holds 20 notes, newest first, and a next cursor."""
    created = await create_many(client, [{"title": f"n{i}"} for i in range(25)])
    page = (await client.get("/api/notes")).json()
    assert [note["id"] for note in page["items"]] == [note["id"] for note in created[::-1]][:20]
    assert page["next_cursor"] is not None


@pytest.mark.parametrize("sort", ["created_at", "-created_at", "updated_at", "title", "-title"])
async def test_cursor_walk_returns_every_note_once_in_order(
    client: httpx.AsyncClient, sort: str
) -> None:
    """Walking all pages with the cursor yields each note exactly once, in the asked order."""
    created = await create_many(
        client, [{"title": f"title {i % 7}", "body": str(i)} for i in range(23)]
    )
    seen = await walk(client, {"limit": 5, "sort": sort})
    assert sorted(note["id"] for note in seen) == sorted(note["id"] for note in created)
    column, reverse = sort.lstrip("-"), sort.startswith("-")
    keys = [(note[column], note["id"]) for note in seen]
    assert keys == sorted(keys, reverse=reverse)


async def test_cursor_walk_is_stable_when_timestamps_tie(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """Notes created at the same instant are still paged exactly once (ties go by id)."""
    instant = dt.datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC)
    app.state.clock = lambda: instant
    created = await create_many(client, [{"title": f"n{i}"} for i in range(17)])
    for sort in ("created_at", "-created_at", "-updated_at"):
        seen = await walk(client, {"limit": 4, "sort": sort})
        ids = [note["id"] for note in seen]
        expected = sorted(note["id"] for note in created)
        assert ids == (expected[::-1] if sort.startswith("-") else expected)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("sort", ["-created_at", "created_at"])
async def test_cursor_walk_sees_every_note_once_while_others_insert(
    client: httpx.AsyncClient, sort: str
) -> None:
    """Concurrent inserts between pages never make the walk skip or repeat a note."""
    created = await create_many(client, [{"title": f"old {i}"} for i in range(40)])
    counter = iter(range(1000))

    async def insert_some() -> None:
        await asyncio.gather(*(create_note(client, title=f"new {next(counter)}") for _ in range(3)))

    seen = await walk(client, {"limit": 6, "sort": sort}, between=insert_some)
    ids = [note["id"] for note in seen]
    assert len(ids) == len(set(ids))
    assert {note["id"] for note in created} <= set(ids)


async def test_offset_paging_answers_next_offset_and_a_link(client: httpx.AsyncClient) -> None:
    """offset=N skips N notes; the page gives next_offset and a Link to the next page."""
    created = await create_many(client, [{"title": f"n{i}"} for i in range(12)])
    newest_first = [note["id"] for note in created[::-1]]
    response = await client.get("/api/notes", params={"offset": 5, "limit": 4})
    page = response.json()
    assert [note["id"] for note in page["items"]] == newest_first[5:9]
    assert page["next_offset"] == 9
    assert 'rel="next"' in response.headers["link"]
    following = response.headers["link"].split(">")[0].lstrip("<")
    assert [note["id"] for note in (await client.get(following)).json()["items"]] == (
        newest_first[9:12]
    )


async def test_cursor_link_header_points_at_the_next_page(client: httpx.AsyncClient) -> None:
    """The Link header of a cursor page carries the filters and the next cursor."""
    await create_many(client, [{"title": f"n{i}", "completed": True} for i in range(3)])
    response = await client.get("/api/notes", params={"limit": 2, "completed": "true"})
    following = response.headers["link"].split(">")[0].lstrip("<")
    assert "completed=true" in following
    assert f"cursor={response.json()['next_cursor']}" in following
    assert len((await client.get(following)).json()["items"]) == 1


@pytest.mark.parametrize(
    "query",
    [
        [("limit", "2")],
        [("tag", "a b"), ("limit", "2"), ("tag", "c&d"), ("completed", "false")],
        [("limit", "2"), ("offset", "1"), ("tag", "é/ü")],
        [("cursor", "{cursor}"), ("limit", "2"), ("tag", "a b")],
        [("limit", "2"), ("unknown", "x y" * 300)],  # too long to be remembered
    ],
)
async def test_the_link_header_is_this_query_with_the_next_cursor_or_offset(
    client: httpx.AsyncClient, query: list[tuple[str, str]]
) -> None:
    """The Link header is the collection's URL with this request's query, every item in its
    order and encoded as urlencode() encodes it, but for the cursor or offset, which comes
    last with the next page's: the same header for the same query on every call."""
    tags = ["a b", "c&d", "é/ü"]
    await create_many(
        client, [{"title": f"n{i}", "completed": False, "tags": tags} for i in range(8)]
    )
    if any(key == "cursor" for key, _ in query):
        first = (await client.get("/api/notes", params={"limit": 2, "tag": "a b"})).json()
        query = [(k, first["next_cursor"] if k == "cursor" else v) for k, v in query]
    for _ in range(2):
        response = await client.get("/api/notes", params=tuple(query))
        assert response.status_code == 200, response.text
        page = response.json()
        sent = response.request.url.params.multi_items()  # as httpx ordered them
        kept = [(k, v) for k, v in sent if k not in ("cursor", "offset")]
        if page["next_offset"] is not None:
            kept.append(("offset", str(page["next_offset"])))
        else:
            kept.append(("cursor", page["next_cursor"]))
        expected = f'<http://notes.test/api/notes?{urllib.parse.urlencode(kept)}>; rel="next"'
        assert response.headers["link"] == expected
    remembered = notes_api._KEPT_QUERIES  # bounded: nothing over the length is kept
    assert all(len(query) <= notes_api._MAX_KEPT_QUERY_LENGTH for query in remembered.values())


async def test_completed_filter_keeps_only_matching_notes(client: httpx.AsyncClient) -> None:
    """completed=true and completed=false split the notes between them."""
    await create_many(client, [{"title": f"n{i}", "completed": i % 3 == 0} for i in range(9)])
    done = (await client.get("/api/notes", params={"completed": "true"})).json()["items"]
    todo = (await client.get("/api/notes", params={"completed": "false"})).json()["items"]
    assert [note["title"] for note in done] == ["n6", "n3", "n0"]
    assert len(todo) == 6
    assert not any(note["completed"] for note in todo)


async def test_tag_filter_requires_every_given_tag(client: httpx.AsyncClient) -> None:
    """tag=a returns notes tagged a; tag=a&tag=b only those tagged with both."""
    await create_note(client, title="ab", tags=["a", "b"])
    await create_note(client, title="a", tags=["a"])
    await create_note(client, title="none")
    one = (await client.get("/api/notes", params={"tag": "a"})).json()["items"]
    both = (await client.get("/api/notes", params=[("tag", "a"), ("tag", "b")])).json()
    assert sorted(note["title"] for note in one) == ["a", "ab"]
    assert [note["title"] for note in both["items"]] == ["ab"]
    assert (await client.get("/api/notes", params={"tag": "zzz"})).json()["items"] == []


async def test_filters_and_tags_survive_pagination(client: httpx.AsyncClient) -> None:
    """Tags of every note come back whole on every page, whatever the page size."""
    await create_many(
        client, [{"title": f"n{i}", "tags": [f"t{j}" for j in range(i % 4)]} for i in range(10)]
    )
    seen = await walk(client, {"limit": 3, "sort": "title"})
    assert {note["title"]: note["tags"] for note in seen} == {
        f"n{i}": [f"t{j}" for j in range(i % 4)] for i in range(10)
    }


@pytest.mark.parametrize(
    "params",
    [{"limit": 0}, {"limit": 101}, {"limit": "x"}, {"sort": "body"}, {"sort": "id; DROP"}],
    ids=["limit-0", "limit-101", "limit-text", "sort-body", "sort-injection"],
)
async def test_invalid_listing_parameters_get_a_422_problem(
    client: httpx.AsyncClient, params: dict[str, Any]
) -> None:
    """limit outside 1-100 and a sort outside the allow-list are 422 problems."""
    assert_problem(await client.get("/api/notes", params=params), 422)


async def test_limit_100_is_accepted(client: httpx.AsyncClient) -> None:
    """limit=100 is the largest page and is allowed."""
    await create_many(client, [{"title": f"n{i}"} for i in range(101)])
    page = (await client.get("/api/notes", params={"limit": 100})).json()
    assert len(page["items"]) == 100
    assert page["next_cursor"] is not None


@pytest.mark.parametrize(
    "params",
    [
        {"cursor": "not a cursor"},
        {"cursor": "eyJzIjoidGl0bGUifQ"},
        {"cursor": "", "offset": 1},
        {"sort": "relevance"},
    ],
    ids=["garbage", "truncated", "cursor-and-offset", "relevance-without-q"],
)
async def test_bad_cursor_or_combination_gets_a_400_problem(
    client: httpx.AsyncClient, params: dict[str, Any]
) -> None:
    """An invalid cursor, cursor with offset, or relevance without q is a 400 problem."""
    assert_problem(await client.get("/api/notes", params=params), 400)


async def test_cursor_of_another_sort_gets_a_400_problem(client: httpx.AsyncClient) -> None:
    """A cursor made for sort=title is refused for sort=-created_at."""
    await create_many(client, [{"title": f"n{i}"} for i in range(3)])
    cursor = (await client.get("/api/notes", params={"limit": 1, "sort": "title"})).json()
    response = await client.get("/api/notes", params={"cursor": cursor["next_cursor"]})
    problem = assert_problem(response, 400)
    assert "sort=title" in problem["detail"]


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql", "mysql"])
def test_a_listing_writes_its_row_count_into_the_sql(dialect: str) -> None:
    """LIMIT is part of a listing's SQL, not a bound value, so PostgreSQL can keep one plan
    of its prepared statement; the count is the page size plus one."""
    shape = repository._PageShape(
        dialect, Sort.CREATED_AT_DESC, 21, False, 0, False, False, False, True
    )
    compiled = repository._page_statement(shape).compile(dialect=_DIALECTS[dialect])
    assert "LIMIT 21" in str(compiled)
    assert "limit" not in compiled.params


@pytest.mark.parametrize("limit", [0, 101, -1])
async def test_the_repository_refuses_a_page_size_out_of_range(
    database: aiodatabases.Database, limit: int
) -> None:
    """The API checks the page size first; the repository checks it again."""
    notes = NotesRepository(database, owner_id=1)
    with pytest.raises(BadRequestError, match="limit must be from 1 to 100"):
        await notes.list_page(ListQuery(limit=limit))


async def test_openapi_documents_every_listing_parameter(client: httpx.AsyncClient) -> None:
    """The listing reads its query as one model; the document still names each parameter,
    optional, with its type and limits, as FastAPI writes declared parameters."""
    operation = (await client.get("/openapi.json")).json()["paths"]["/api/notes"]["get"]
    parameters = {p["name"]: p for p in operation["parameters"]}
    assert list(parameters) == ["limit", "cursor", "offset", "sort", "completed", "tag", "q"]
    assert all(p["in"] == "query" and p["required"] is False for p in parameters.values())
    assert all(p["description"] == p["schema"]["description"] for p in parameters.values())
    limit = parameters["limit"]["schema"]
    assert (limit["type"], limit["minimum"], limit["maximum"], limit["default"]) == (
        "integer",
        1,
        100,
        20,
    )
    assert parameters["sort"]["schema"]["enum"] == [sort.value for sort in Sort]
    tag = parameters["tag"]["schema"]
    assert (tag["type"], tag["maxItems"], tag["items"]["maxLength"]) == ("array", 20, 50)
    assert parameters["cursor"]["schema"] == {
        "type": "string",
        "maxLength": 1000,
        "description": "next_cursor of the previous page.",
        "title": "Cursor",
    }


async def test_listing_reads_the_last_of_repeated_values_and_ignores_unknown_ones(
    client: httpx.AsyncClient,
) -> None:
    """As for any FastAPI query parameter: the last value of a repeated scalar counts, every
    value of ``tag`` counts, and parameters the listing does not take are ignored."""
    await create_many(
        client, [{"title": f"n{i}", "tags": ["a", "b"] if i % 2 else ["a"]} for i in range(6)]
    )
    response = await client.get("/api/notes?limit=50&limit=2&tag=a&tag=b&unknown=1")
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert len(items) == 2
    assert all(sorted(item["tags"]) == ["a", "b"] for item in items)


async def test_a_page_is_written_exactly_as_its_model_writes_it(client: httpx.AsyncClient) -> None:
    """The listing writes its fields without building models; the bytes are those of the
    validated NotePage (aware timestamps, field order, no extra fields), on every backend."""
    await create_many(
        client,
        [
            {"title": "plain", "body": "", "tags": []},
            {"title": 'ünïcødé ✓ "quoted"', "body": "line\nbreak", "tags": ["b", "a"]},
            {"title": "done", "completed": True, "tags": ["x"]},
            {
                "title": "escapes \\ / \u2028 \u00e9 \U0001f389",
                "body": "tab\t cr\r unit\x1f del\x7f <b>&amp;</b>",
                "tags": ["中文"],
            },
        ],
    )
    for params in ({"limit": 2}, {"limit": 2, "offset": 1}, {"limit": 10}):
        response = await client.get("/api/notes", params=params)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        page = NotePage.model_validate_json(response.content)
        assert response.content == page.model_dump_json().encode()
        assert all(note.created_at.utcoffset() == dt.timedelta(0) for note in page.items)
    assert [note.tags for note in page.items] == [["中文"], ["x"], ["b", "a"], []]


@pytest.mark.parametrize(
    "cursor",
    [
        Cursor(Sort.RELEVANCE, offset=40),
        Cursor(Sort.CREATED_AT_DESC, dt.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=dt.UTC), 7),
        Cursor(Sort.UPDATED_AT, dt.datetime(2026, 1, 2, tzinfo=dt.UTC), 2**62),
        Cursor(Sort.TITLE, 'héllo "q" \\ \x01 ✓ 𝄞', 9),
        Cursor(Sort.TITLE_DESC, "", 1),
    ],
)
def test_a_cursor_is_base64url_of_its_compact_json(cursor: Cursor) -> None:
    """The cursor's text is base64url (unpadded) of compact JSON, and reads back the same."""
    text = encode_cursor(cursor)
    data = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    expected: dict[str, Any] = {"s": cursor.sort.value}
    if cursor.sort is Sort.RELEVANCE:
        expected["o"] = cursor.offset
    else:
        value = cursor.value
        expected |= {"v": value.isoformat() if isinstance(value, dt.datetime) else value}
        expected["i"] = cursor.id
    assert data == expected
    compact = json.dumps(expected, separators=(",", ":"), ensure_ascii=False).encode()
    assert text == base64.urlsafe_b64encode(compact).rstrip(b"=").decode()
    assert decode_cursor(text, cursor.sort) == cursor


def test_the_fields_of_a_note_are_those_of_the_model() -> None:
    """note_page_json writes NoteFields as the JSON of a NotePage: same fields, order, types."""
    fields = typing.get_type_hints(NoteFields)
    assert list(fields) == list(Note.model_fields)
    for name, field in Note.model_fields.items():
        assert fields[name] == field.annotation, name
    assert list(typing.get_type_hints(NotePageFields)) == list(NotePage.model_fields)
