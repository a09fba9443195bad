"""Full-text search: hostile input is only ever words, results match a Python reference."""

from __future__ import annotations

import random
from typing import Any

import httpx
import pytest

import aiodatabases
from notes import search

from .helpers import create_note

#: Inputs that are syntax somewhere: FTS5, tsquery, MySQL boolean mode, LIKE, SQL itself.
HOSTILE = [
    '"',
    "'",
    "%",
    "_",
    "*",
    "NEAR",
    "AND",
    "OR",
    "NOT",
    "-",
    "(",
    ")",
    "^",
    ":",
    "+",
    "~",
    "@",
    "<>",
    "\\",
    '"unterminated',
    "a*",
    "NEAR(alpha beta, 2)",
    "title:alpha",
    "alpha AND NOT beta",
    "-alpha +beta",
    "%alpha%",
    "al_ha",
    "'; DROP TABLE notes; --",
    '" OR 1=1 --',
    "alpha) OR (beta",
    "{alpha beta}",
    "alpha & beta | !gamma",
    "alpha <-> beta",
    "🙂",
    "é",
    "日本語",
    "\u202eevil",
    "a\u0301",
    "\x00",
    "  ",
]

VOCABULARY = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "near",
    "and",
    "not",
    "café",
    "naïve",
    "zürich",
    "straße",
    "москва",
    "αθήνα",
    "東京",
    "data2024",
    "under_score",
    "o'brien",
    "semi;colon",
    "per%cent",
    "the",
    "with",
]


def dialect_of(database: aiodatabases.Database) -> str:
    """The database family behind the app: sqlite, postgresql or mysql."""
    name = database.url.dialect
    return {"postgres": "postgresql", "mariadb": "mysql"}.get(name, name)


def reference_words(text: str, dialect: str) -> set[str]:
    """The words a backend indexes or searches for in text, computed in Python."""
    if dialect == "mysql":
        return {word for word in search.words(text, underscore=True) if search.mysql_indexed(word)}
    return set(search.words(text, diacritics=dialect != "postgresql"))


def reference_matches(notes: list[dict[str, Any]], query: str, dialect: str) -> set[int]:
    """Ids of the notes holding every word of query in title or body: the reference result.

    A blank query is no search at all: every note.
    """
    if not query.strip():
        return {note["id"] for note in notes}
    wanted = reference_words(query, dialect)
    if not wanted:
        return set()
    return {
        note["id"]
        for note in notes
        if wanted <= reference_words(f"{note['title']} {note['body']}", dialect)
    }


async def search_ids(client: httpx.AsyncClient, query: str) -> list[int]:
    """Every id the API finds for query, following all pages."""
    ids: list[int] = []
    params: dict[str, Any] = {"q": query, "limit": 100}
    while True:
        response = await client.get("/api/notes", params=params)
        assert response.status_code == 200, (query, response.text)
        page = response.json()
        ids.extend(note["id"] for note in page["items"])
        if page["next_cursor"] is None:
            return ids
        params["cursor"] = page["next_cursor"]


def test_words_are_runs_of_letters_and_digits_folded() -> None:
    """words() cuts on anything but letters and digits, lower-cases, strips Latin accents."""
    assert search.words('Café "NEAR" o\'Brien-42 x_y 東京 Αθήνα') == [
        "cafe",
        "near",
        "o",
        "brien",
        "42",
        "x",
        "y",
        "東京",
        "αθήνα",
    ]
    assert search.words("Café", diacritics=False) == ["café"]
    assert search.words("%_*()-\"'") == []


@pytest.mark.parametrize("text", HOSTILE)
def test_fts5_query_is_only_quoted_words(text: str) -> None:
    """The FTS5 expression of any input is a list of "quoted" words, or None when it has none."""
    expression = search.fts5_query(text)
    if expression is None:
        assert search.words(text) == []
        return
    for term in expression.split(" "):
        assert term.startswith('"')
        assert term.endswith('"')
        assert all(char.isalnum() for char in term[1:-1])


@pytest.mark.parametrize("text", HOSTILE)
def test_mysql_boolean_query_is_only_required_quoted_words(text: str) -> None:
    """The MySQL boolean-mode query of any input is +"word" terms only, or None."""
    expression = search.mysql_boolean_query(text)
    if expression is not None:
        for term in expression.split(" "):
            assert term.startswith('+"')
            assert term.endswith('"')
            assert all(char.isalnum() or char == "_" for char in term[2:-1])


async def test_hostile_queries_are_answered_never_refused(client: httpx.AsyncClient) -> None:
    """Every hostile q gets 200 and a list of notes; none is a syntax error or a 500."""
    await create_note(client, title="alpha beta", body="gamma %s _ * NEAR AND (x)")
    for text in HOSTILE:
        response = await client.get("/api/notes", params={"q": text})
        assert response.status_code == 200, (text, response.text)
        assert isinstance(response.json()["items"], list)


async def test_hostile_queries_do_not_harm_the_data(client: httpx.AsyncClient) -> None:
    """After every hostile query the notes are all still there, unchanged."""
    notes = [await create_note(client, title=f"alpha {i}", body="beta") for i in range(3)]
    for text in HOSTILE:
        await client.get("/api/notes", params={"q": text})
    listing = (await client.get("/api/notes", params={"sort": "created_at"})).json()["items"]
    assert listing == notes


async def test_operators_are_searched_as_words(client: httpx.AsyncClient) -> None:
    """q=NEAR finds the note containing the word near, and not the others."""
    near = await create_note(client, title="stay near the station")
    await create_note(client, title="far away")
    assert await search_ids(client, "NEAR") == [near["id"]]
    assert await search_ids(client, "near AND") == []


async def test_search_is_case_insensitive_and_needs_every_word(
    client: httpx.AsyncClient,
) -> None:
    """Words match in any case and order; a note must hold all of them."""
    both = await create_note(client, title="Quarterly REPORT", body="draft for finance")
    await create_note(client, title="report only")
    assert await search_ids(client, "finance report") == [both["id"]]
    assert await search_ids(client, "QUARTERLY") == [both["id"]]


async def test_title_matches_rank_above_body_matches(client: httpx.AsyncClient) -> None:
    """By relevance, a note with the word in its title comes before one with it in the body."""
    in_body = await create_note(client, title="weekly notes", body="remember the walrus " * 3)
    in_title = await create_note(client, title="walrus", body="a large marine mammal")
    assert await search_ids(client, "walrus") == [in_title["id"], in_body["id"]]


async def test_search_combines_with_filters_and_sort(client: httpx.AsyncClient) -> None:
    """q works with completed, tag and an explicit sort (then paged by cursor)."""
    wanted = [
        await create_note(client, title=f"alpha {i}", completed=True, tags=["x"]) for i in range(5)
    ]
    await create_note(client, title="alpha open", tags=["x"])
    await create_note(client, title="beta", completed=True, tags=["x"])
    ids: list[int] = []
    params: dict[str, Any] = {"q": "alpha", "completed": "true", "tag": "x", "sort": "title"}
    params["limit"] = 2
    while True:
        page = (await client.get("/api/notes", params=params)).json()
        ids.extend(note["id"] for note in page["items"])
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]
    assert ids == [note["id"] for note in wanted]


async def test_search_follows_updates_and_deletes(client: httpx.AsyncClient) -> None:
    """The index follows writes: a renamed note is found by its new title, a deleted one not."""
    note = await create_note(client, title="original heading")
    await client.patch(f"/api/notes/{note['id']}", json={"title": "renamed heading"})
    assert await search_ids(client, "original") == []
    assert await search_ids(client, "renamed") == [note["id"]]
    await client.delete(f"/api/notes/{note['id']}")
    assert await search_ids(client, "heading") == []


@pytest.mark.timeout(120)
async def test_search_matches_the_python_reference_on_a_generated_corpus(
    client: httpx.AsyncClient, database: aiodatabases.Database
) -> None:
    """On 150 generated notes, every query (hostile ones too) finds what the reference finds."""
    dialect = dialect_of(database)
    rng = random.Random(20261122)

    def text(words: int) -> str:
        picked = [rng.choice(VOCABULARY) for _ in range(words)]
        picked = [word.upper() if rng.random() < 0.2 else word for word in picked]
        return " ".join(picked) + rng.choice(["", ".", "!", " -- (ok)"])

    notes: list[dict[str, Any]] = []
    for _ in range(3):
        batch = [{"title": text(2), "body": text(6)} for _ in range(50)]
        response = await client.post("/api/notes/batch", json={"notes": batch})
        notes.extend(response.json())

    queries = list(HOSTILE)
    for _ in range(60):
        words = [rng.choice(VOCABULARY) for _ in range(rng.randint(1, 3))]
        decorated = [
            rng.choice(["{}", '"{}"', "{}*", "-{}", "({})", "{}%"]).format(w) for w in words
        ]
        queries.append(rng.choice([" ", " AND ", " OR ", " NEAR "]).join(decorated))
    queries += ["CAFE", "Naive", "ZURICH", "москва".upper(), "data2024", "under", "score", "brien"]

    for query in queries:
        found = await search_ids(client, query)
        assert len(found) == len(set(found)), query
        assert set(found) == reference_matches(notes, query, dialect), query
