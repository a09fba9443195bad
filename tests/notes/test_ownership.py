"""Ownership: every route under /api x every principal; nobody touches a note not theirs.

The matrix lists every (method, path) of the app under /api. A route added without a line
here fails ``test_the_matrix_covers_every_api_route``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts

import aiodatabases
from notes.accounts import AccountsRepository
from notes.auth import Auth
from notes.repository import utc_now
from notes.tables import note_tags, notes
from notes.tokens import hash_refresh_token, new_refresh_token

from .conftest import PASSWORD, add_user

Kind = Literal["note", "notes", "self", "public"]

#: Every route under /api, by what it acts on:
#: note: one note by id; notes: the caller's collection; self: the caller's account;
#: public: no credentials needed (they never read a note).
MATRIX: dict[tuple[str, str], Kind] = {
    ("GET", "/api/notes/{note_id}"): "note",
    ("PUT", "/api/notes/{note_id}"): "note",
    ("PATCH", "/api/notes/{note_id}"): "note",
    ("DELETE", "/api/notes/{note_id}"): "note",
    ("GET", "/api/notes"): "notes",
    ("POST", "/api/notes"): "notes",
    ("POST", "/api/notes/batch"): "notes",
    ("GET", "/api/users/me"): "self",
    ("PUT", "/api/users/me/password"): "self",
    ("POST", "/api/auth/logout"): "self",
    ("POST", "/api/auth/register"): "public",
    ("POST", "/api/auth/token"): "public",
    ("POST", "/api/auth/refresh"): "public",
}

PRINCIPALS = ("other", "anonymous", "expired", "deleted", "owner")
#: The owner's note holds this word; nobody else may find it.
SECRET_WORD = "zanzibarquokka"


def api_routes(app: FastAPI) -> set[tuple[str, str]]:
    """Every (method, path) the app serves under /api, in included routers too."""
    found: set[tuple[str, str]] = set()
    # FastAPI 0.13x and later keep included routers whole; this walks into them.
    for route in iter_route_contexts(app.routes):
        path = route.path or ""
        if path.startswith("/api") and route.methods:
            found |= {(method, path) for method in route.methods}
    assert found, "no route found under /api: the walk over the app's routes is broken"
    return found


def test_the_matrix_covers_every_api_route(app: FastAPI) -> None:
    """The matrix and the app's routes under /api are the same set."""
    assert api_routes(app) == set(MATRIX)


@dataclass
class World:
    """The principals and the owner's note they go after."""

    app: FastAPI
    database: aiodatabases.Database
    headers: dict[str, dict[str, str]]
    emails: dict[str, str]
    note: dict[str, Any]
    etag: str


async def _issue(app: FastAPI, user_id: int, at: dt.datetime) -> str:
    auth: Auth = app.state.auth
    session_id = await AccountsRepository(app.state.database).open_session(
        user_id, hash_refresh_token(new_refresh_token()), at, at + dt.timedelta(days=1)
    )
    return auth.keys.issue(user_id, session_id, at)


@pytest.fixture
async def world(app: FastAPI, anonymous: httpx.AsyncClient) -> AsyncIterator[World]:
    """An owner with a tagged note, another user, and the bad-credential principals."""
    database: aiodatabases.Database = app.state.database
    owner_id, owner_token = await add_user(app, "owner@example.org")
    _, other_token = await add_user(app, "other@example.org")
    expired_id, _ = await add_user(app, "expired@example.org")
    expired_token = await _issue(app, expired_id, utc_now() - dt.timedelta(hours=2))
    deleted_id, deleted_token = await add_user(app, "deleted@example.org")
    await AccountsRepository(database).delete_user(deleted_id)
    headers = {
        "owner": {"Authorization": f"Bearer {owner_token}"},
        "other": {"Authorization": f"Bearer {other_token}"},
        "anonymous": {},
        "expired": {"Authorization": f"Bearer {expired_token}"},
        "deleted": {"Authorization": f"Bearer {deleted_token}"},
    }
    created = await anonymous.post(
        "/api/notes",
        json={"title": f"plans {SECRET_WORD}", "body": f"{SECRET_WORD} body", "tags": ["t1"]},
        headers=headers["owner"],
    )
    assert created.status_code == 201
    yield World(
        app,
        database,
        headers,
        {"owner": "owner@example.org", "other": "other@example.org"},
        created.json(),
        created.headers["etag"],
    )
    assert owner_id


async def stored(database: aiodatabases.Database, note_id: int) -> list[tuple[Any, ...]]:
    """The note's row and tag rows exactly as the database holds them."""
    row = await database.fetch_all(sa.select(notes).where(notes.c.id == note_id))
    tags = await database.fetch_all(
        sa.select(note_tags).where(note_tags.c.note_id == note_id).order_by(note_tags.c.tag)
    )
    return [tuple(r.values()) for r in [*row, *tags]]


async def call(
    http: httpx.AsyncClient, world: World, principal: str, method: str, path: str
) -> httpx.Response:
    """Make the request of one matrix line as one principal."""
    headers = dict(world.headers[principal])
    note_id = world.note["id"]
    url = path.replace("{note_id}", str(note_id))
    if path == "/api/notes/{note_id}":
        if method in {"PUT", "PATCH", "DELETE"} and principal != "owner":
            headers["If-Match"] = world.etag  # even the right ETag must not help another user
        body = {"title": "hijacked", "body": "changed"} if method in {"PUT", "PATCH"} else None
        return await http.request(method, url, json=body, headers=headers)
    if (method, path) == ("GET", "/api/notes"):
        return await http.get(url, params={"q": SECRET_WORD, "tag": "t1"}, headers=headers)
    if (method, path) == ("POST", "/api/notes"):
        return await http.post(url, json={"title": f"mine {SECRET_WORD}"}, headers=headers)
    if (method, path) == ("POST", "/api/notes/batch"):
        return await http.post(url, json={"notes": [{"title": "one"}]}, headers=headers)
    if (method, path) == ("PUT", "/api/users/me/password"):
        change = {"current_password": PASSWORD, "new_password": "a new password"}
        return await http.put(url, json=change, headers=headers)
    if (method, path) == ("POST", "/api/auth/register"):
        return await http.post(url, json={"email": "x"}, headers=headers)
    if (method, path) == ("POST", "/api/auth/token"):
        form = {"username": world.emails["owner"], "password": "not the password"}
        return await http.post(url, data=form, headers=headers)
    if (method, path) == ("POST", "/api/auth/refresh"):
        return await http.post(url, json={"refresh_token": "nope"}, headers=headers)
    return await http.request(method, url, headers=headers)


def _listed_ids(response: httpx.Response) -> set[int]:
    body = response.json()
    items = body["items"] if isinstance(body, dict) else body
    return {item["id"] for item in items}


async def test_the_ownership_matrix_has_no_violation(
    world: World, anonymous: httpx.AsyncClient
) -> None:
    """Other users get 404 (note untouched) or only their own data; bad credentials get 401."""
    violations: list[str] = []
    before = await stored(world.database, world.note["id"])
    note_id = world.note["id"]
    # The owner goes last; reads run first, DELETE after the other writes and logout after
    # everything, so that each call sees the note as created and a live session.
    order = sorted(
        MATRIX,
        key=lambda key: (key[1] == "/api/auth/logout", key[0] == "DELETE", key[0] != "GET"),
    )
    for principal in PRINCIPALS:
        for method, path in order:
            kind = MATRIX[(method, path)]
            response = await call(anonymous, world, principal, method, path)
            status = response.status_code
            where = f"{principal} {method} {path}: {status}"
            if principal in {"anonymous", "expired", "deleted"} and kind != "public":
                if status != 401 or not response.headers.get("www-authenticate", "").startswith(
                    "Bearer"
                ):
                    violations.append(f"{where}, expected 401 with WWW-Authenticate: Bearer")
            elif principal == "other" and kind == "note":
                if status != 404:
                    violations.append(f"{where}, expected 404")
            elif principal == "other" and (method, path) == ("GET", "/api/notes"):
                if status != 200 or note_id in _listed_ids(response):
                    violations.append(f"{where}, listed or searched the owner's note")
            elif principal == "other" and kind == "notes":
                if status != 201 or note_id in _listed_ids_of_created(response):
                    violations.append(f"{where}, expected 201 with only their own notes")
            elif principal == "other" and (method, path) == ("GET", "/api/users/me"):
                if response.json().get("email") != world.emails["other"]:
                    violations.append(f"{where}, answered another account")
            elif principal == "owner" and kind in {"note", "notes", "self"}:
                if status >= 300:
                    violations.append(f"{where}, the owner was refused")
                if (method, path) == ("GET", "/api/notes") and note_id not in _listed_ids(response):
                    violations.append(f"{where}, the owner does not find their note")
            elif kind == "public" and not 400 <= status < 500:
                violations.append(f"{where}, a refused public request should be a 4xx")
            if principal != "owner" and await stored(world.database, note_id) != before:
                violations.append(f"{where}: the owner's note changed")
                before = await stored(world.database, note_id)
    assert violations == []
    assert await stored(world.database, note_id) == []  # the owner's own DELETE went through


def _listed_ids_of_created(response: httpx.Response) -> set[int]:
    body = response.json()
    items = body if isinstance(body, list) else [body]
    return {item["id"] for item in items if isinstance(item, dict) and "id" in item}


async def test_another_users_note_is_404_even_for_unusual_requests(
    world: World, anonymous: httpx.AsyncClient
) -> None:
    """HEAD-less GET with If-None-Match, If-Match: *, empty PATCH: all 404 for another user."""
    url = f"/api/notes/{world.note['id']}"
    other = world.headers["other"]
    before = await stored(world.database, world.note["id"])
    attempts = [
        await anonymous.get(url, headers={**other, "If-None-Match": world.etag}),
        await anonymous.patch(url, json={}, headers={**other, "If-Match": "*"}),
        await anonymous.put(url, json={"title": "x"}, headers={**other, "If-Match": "*"}),
        await anonymous.delete(url, headers={**other, "If-Match": "*"}),
        await anonymous.delete(url, headers=other),
    ]
    assert [response.status_code for response in attempts] == [404] * len(attempts)
    assert await stored(world.database, world.note["id"]) == before
    # The answer is the same as for a note that does not exist at all.
    missing = await anonymous.get("/api/notes/999999999", headers=other)
    assert attempts[0].json()["detail"].replace(str(world.note["id"]), "N") == missing.json()[
        "detail"
    ].replace("999999999", "N")


async def test_lists_pages_and_search_never_show_another_users_notes(
    world: World, anonymous: httpx.AsyncClient
) -> None:
    """Every listing shape of another user (cursor, offset, tag, search, sort) omits the note."""
    other = world.headers["other"]
    for index in range(3):
        await anonymous.post("/api/notes", json={"title": f"other {index}"}, headers=other)
    queries: list[dict[str, Any]] = [
        {},
        {"limit": 1},
        {"limit": 1, "offset": 0},
        {"tag": "t1"},
        {"q": SECRET_WORD},
        {"q": "plans"},
        {"sort": "title"},
        {"completed": "false"},
    ]
    for params in queries:
        seen: set[int] = set()
        response = await anonymous.get("/api/notes", params=params, headers=other)
        while True:
            assert response.status_code == 200
            seen |= _listed_ids(response)
            page = response.json()
            if page["next_cursor"] is None:
                break
            following = (
                {"offset": page["next_offset"]}
                if "offset" in params
                else {"cursor": page["next_cursor"]}
            )
            response = await anonymous.get(
                "/api/notes", params={**params, **following}, headers=other
            )
        assert world.note["id"] not in seen, params
    owner_search = await anonymous.get(
        "/api/notes", params={"q": SECRET_WORD}, headers=world.headers["owner"]
    )
    assert _listed_ids(owner_search) == {world.note["id"]}
