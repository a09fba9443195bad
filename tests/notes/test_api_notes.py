"""The notes API, one note at a time: create, read, replace, patch, delete, ETags."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import httpx
import pytest

from .helpers import assert_problem, create_note, etag_of


async def test_create_returns_201_with_location_etag_and_the_note(
    client: httpx.AsyncClient,
) -> None:
    """POST /api/notes answers 201, a Location that reads the note back, and its ETag."""
    response = await client.post(
        "/api/notes",
        json={"title": "  Buy milk ", "body": "two litres", "tags": ["home", "shop", "home"]},
    )
    assert response.status_code == 201
    note = response.json()
    assert note["title"] == "Buy milk"
    assert note["body"] == "two litres"
    assert note["completed"] is False
    assert note["tags"] == ["home", "shop"]
    assert note["version"] == 1
    assert response.headers["etag"] == etag_of(note)
    assert response.headers["location"] == f"http://notes.test/api/notes/{note['id']}"
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-cache"
    again = await client.get(response.headers["location"])
    assert again.json() == note
    # Written by the route itself, the body is byte for byte what FastAPI writes for a Note.
    assert response.content == again.content


async def test_location_follows_the_host_and_path_of_each_request(
    client: httpx.AsyncClient,
) -> None:
    """Location is built from the request that created the note, whichever host it named."""
    for host in ("notes.test", "other.example:8080", "notes.test"):
        response = await client.post("/api/notes", json={"title": "t"}, headers={"Host": host})
        assert response.status_code == 201
        assert response.headers["location"] == f"http://{host}/api/notes/{response.json()['id']}"
    response = await client.post("/api/notes?x=1#frag", json={"title": "t"})
    assert response.status_code == 201
    assert response.headers["location"] == f"http://notes.test/api/notes/{response.json()['id']}"


async def test_timestamps_are_utc_and_timezone_aware(client: httpx.AsyncClient) -> None:
    """created_at and updated_at come back with a UTC offset, close to now."""
    before = dt.datetime.now(dt.UTC)
    note = await create_note(client)
    created = dt.datetime.fromisoformat(note["created_at"])
    assert created.utcoffset() == dt.timedelta(0)
    assert abs(created - before) < dt.timedelta(seconds=30)
    fetched = (await client.get(f"/api/notes/{note['id']}")).json()
    assert dt.datetime.fromisoformat(fetched["updated_at"]) == created


async def test_get_answers_the_note_with_its_etag(client: httpx.AsyncClient) -> None:
    """GET /api/notes/{id} answers 200 with an ETag naming id and version."""
    note = await create_note(client, tags=["b", "a"])
    response = await client.get(f"/api/notes/{note['id']}")
    assert response.status_code == 200
    assert response.headers["etag"] == etag_of(note)
    assert response.json()["tags"] == ["b", "a"]


async def test_if_none_match_with_the_current_etag_answers_304(client: httpx.AsyncClient) -> None:
    """If-None-Match holding the current ETag gets 304 with no body; a stale one gets 200."""
    note = await create_note(client)
    url = f"/api/notes/{note['id']}"
    not_modified = await client.get(url, headers={"If-None-Match": etag_of(note)})
    assert not_modified.status_code == 304
    assert not_modified.content == b""
    assert not_modified.headers["etag"] == etag_of(note)
    weak = await client.get(url, headers={"If-None-Match": f'"x", W/{etag_of(note)}'})
    assert weak.status_code == 304
    await client.patch(url, json={"completed": True})
    changed = await client.get(url, headers={"If-None-Match": etag_of(note)})
    assert changed.status_code == 200
    assert changed.json()["version"] == 2


async def test_put_replaces_every_field_and_bumps_the_version(client: httpx.AsyncClient) -> None:
    """PUT sets all fields (tags included) and returns version 2 with a new ETag."""
    note = await create_note(client, body="old", completed=True, tags=["x"])
    response = await client.put(
        f"/api/notes/{note['id']}",
        json={"title": "new", "tags": ["y", "z"]},
        headers={"If-Match": etag_of(note)},
    )
    assert response.status_code == 200
    replaced = response.json()
    assert {k: replaced[k] for k in ("title", "body", "completed", "tags", "version")} == {
        "title": "new",
        "body": "",
        "completed": False,
        "tags": ["y", "z"],
        "version": 2,
    }
    assert replaced["created_at"] == note["created_at"]
    assert replaced["updated_at"] >= note["updated_at"]
    assert response.headers["etag"] == etag_of(replaced)


async def test_patch_changes_only_the_fields_sent(client: httpx.AsyncClient) -> None:
    """PATCH with completed only keeps title, body and tags."""
    note = await create_note(client, body="keep", tags=["keep"])
    response = await client.patch(
        f"/api/notes/{note['id']}",
        json={"completed": True},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert response.status_code == 200
    patched = response.json()
    assert patched["completed"] is True
    assert (patched["title"], patched["body"], patched["tags"]) == ("a note", "keep", ["keep"])
    assert patched["version"] == 2


async def test_patch_with_tags_replaces_them(client: httpx.AsyncClient) -> None:
    """PATCH tags=[] removes every tag; the note stays."""
    note = await create_note(client, tags=["a", "b"])
    patched = (await client.patch(f"/api/notes/{note['id']}", json={"tags": []})).json()
    assert patched["tags"] == []
    assert (await client.get(f"/api/notes/{note['id']}")).json()["tags"] == []


async def test_empty_patch_changes_nothing(client: httpx.AsyncClient) -> None:
    """PATCH {} returns the note as it is, at the same version."""
    note = await create_note(client)
    response = await client.patch(f"/api/notes/{note['id']}", json={})
    assert response.json()["version"] == 1


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
async def test_stale_if_match_gets_412_and_changes_nothing(
    client: httpx.AsyncClient, method: str
) -> None:
    """A write with the ETag of an older version gets 412 and leaves the note as it is."""
    note = await create_note(client, title="v1")
    url = f"/api/notes/{note['id']}"
    current = (await client.patch(url, json={"title": "v2"})).json()
    body: dict[str, Any] | None = None if method == "DELETE" else {"title": "lost update"}
    response = await client.request(method, url, json=body, headers={"If-Match": etag_of(note)})
    problem = assert_problem(response, 412)
    assert problem["current_version"] == 2
    assert (await client.get(url)).json() == current


@pytest.mark.parametrize(
    "if_match",
    ["*", '"0.0", {etag}', "{etag}"],
    ids=["star", "list", "exact"],
)
async def test_matching_if_match_lets_the_write_through(
    client: httpx.AsyncClient, if_match: str
) -> None:
    """If-Match with *, with the ETag in a list, or with the ETag alone, allows the write."""
    note = await create_note(client)
    header = if_match.format(etag=etag_of(note))
    response = await client.patch(
        f"/api/notes/{note['id']}", json={"title": "ok"}, headers={"If-Match": header}
    )
    assert response.status_code == 200


@pytest.mark.parametrize("if_match", ["W/{etag}", '"{other}.1"', "garbage"])
async def test_weak_foreign_or_junk_if_match_gets_412(
    client: httpx.AsyncClient, if_match: str
) -> None:
    """If-Match compares strongly: a weak ETag, another note's ETag or junk never matches."""
    note = await create_note(client)
    header = if_match.format(etag=etag_of(note), other=note["id"] + 1)
    response = await client.patch(
        f"/api/notes/{note['id']}", json={"title": "no"}, headers={"If-Match": header}
    )
    assert_problem(response, 412)


@pytest.mark.timeout(60)
async def test_two_concurrent_patches_with_one_etag_one_wins_one_gets_412(
    client: httpx.AsyncClient,
) -> None:
    """Racing PATCHes with the same If-Match: exactly one 200, the others 412, no lost update."""
    note = await create_note(client)
    url = f"/api/notes/{note['id']}"
    responses = await asyncio.gather(
        *(
            client.patch(url, json={"title": f"writer {i}"}, headers={"If-Match": etag_of(note)})
            for i in range(8)
        )
    )
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200] + [412] * 7
    winner = next(response.json() for response in responses if response.status_code == 200)
    assert (await client.get(url)).json() == winner
    assert winner["version"] == 2


async def test_delete_answers_204_then_the_note_is_gone(client: httpx.AsyncClient) -> None:
    """DELETE answers 204 with no body; GET then answers 404; DELETE again answers 404."""
    note = await create_note(client, tags=["t"])
    url = f"/api/notes/{note['id']}"
    response = await client.delete(url, headers={"If-Match": etag_of(note)})
    assert response.status_code == 204
    assert response.content == b""
    assert_problem(await client.get(url), 404)
    assert_problem(await client.delete(url), 404)
    assert (await client.get("/api/notes", params={"tag": "t"})).json()["items"] == []


async def test_a_deleted_notes_id_and_etag_never_name_a_new_note(
    client: httpx.AsyncClient,
) -> None:
    """Deleting the newest note and creating another gives the new one a new id, so the old
    URL stays 404 and the old ETag matches nothing (on SQLite too, where a table without
    AUTOINCREMENT hands the largest id out again)."""
    first = await create_note(client, title="kept")
    newest = await create_note(client, title="deleted")
    url = f"/api/notes/{newest['id']}"
    response = await client.delete(url, headers={"If-Match": etag_of(newest)})
    assert response.status_code == 204
    created = await create_note(client, title="created after the delete")
    assert created["id"] > newest["id"] > first["id"]
    assert_problem(await client.get(url), 404)
    stale = await client.patch(
        f"/api/notes/{created['id']}", json={"title": "x"}, headers={"If-Match": etag_of(newest)}
    )
    assert_problem(stale, 412)


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE"])
async def test_missing_note_is_a_404_problem(client: httpx.AsyncClient, method: str) -> None:
    """Every method on a note that does not exist answers a 404 problem naming it."""
    body = None if method in {"GET", "DELETE"} else {"title": "x"}
    response = await client.request(method, "/api/notes/424242", json=body)
    problem = assert_problem(response, 404)
    assert "424242" in problem["detail"]
    assert problem["instance"] == "/api/notes/424242"


@pytest.mark.parametrize(
    ("payload", "where"),
    [
        ({}, ["body", "title"]),
        ({"title": ""}, ["body", "title"]),
        ({"title": "   "}, ["body", "title"]),
        ({"title": "x" * 201}, ["body", "title"]),
        ({"title": "two\nlines"}, ["body", "title"]),
        ({"title": "ok", "body": "é" * 60_000}, ["body", "body"]),
        ({"title": "ok", "tags": [f"t{i}" for i in range(21)]}, ["body", "tags"]),
        ({"title": "ok", "tags": ["x" * 51]}, ["body", "tags", "0"]),
        ({"title": "ok", "tags": [""]}, ["body", "tags", "0"]),
        ({"title": "ok", "completed": "maybe"}, ["body", "completed"]),
        ({"title": "ok", "colour": "red"}, ["body", "colour"]),
    ],
    ids=[
        "no-title",
        "empty-title",
        "blank-title",
        "long-title",
        "multiline-title",
        "body-over-100-KiB",
        "21-tags",
        "long-tag",
        "empty-tag",
        "bad-bool",
        "unknown-field",
    ],
)
async def test_invalid_note_gets_a_422_problem_and_is_not_stored(
    client: httpx.AsyncClient, payload: dict[str, Any], where: list[str]
) -> None:
    """An invalid note is refused with a 422 problem locating the error; nothing is stored."""
    problem = assert_problem(await client.post("/api/notes", json=payload), 422)
    assert where in [error["loc"] for error in problem["errors"]]
    assert all(set(error) == {"loc", "msg", "type"} for error in problem["errors"])
    assert (await client.get("/api/notes")).json()["items"] == []


@pytest.mark.parametrize(
    ("document", "where"),
    [
        ('{"title": "a\\ud800b"}', ["body", "title"]),
        ('{"title": "ok", "body": "' + "x" * 90_000 + '\\udfff"}', ["body", "body"]),
        ('{"title": "ok", "tags": ["\\udc00"]}', ["body", "tags", "0"]),
    ],
    ids=["title", "end-of-a-long-body", "tag"],
)
async def test_a_lone_surrogate_gets_a_422_problem(
    client: httpx.AsyncClient, document: str, where: list[str]
) -> None:
    """JSON can escape half of a surrogate pair; such text is refused wherever it is."""
    response = await client.post(
        "/api/notes", content=document, headers={"Content-Type": "application/json"}
    )
    problem = assert_problem(response, 422)
    assert where in [error["loc"] for error in problem["errors"]]
    assert (await client.get("/api/notes")).json()["items"] == []


async def test_body_of_exactly_100_kib_is_accepted(client: httpx.AsyncClient) -> None:
    """A body of 102400 bytes of UTF-8 is the largest accepted, and comes back whole."""
    body = "é" * (100 * 1024 // 2)
    note = await create_note(client, body=body)
    assert (await client.get(f"/api/notes/{note['id']}")).json()["body"] == body


async def test_patch_with_null_gets_a_422_problem(client: httpx.AsyncClient) -> None:
    """PATCH title=null is refused: leaving a field out is how to keep it."""
    note = await create_note(client)
    response = await client.patch(f"/api/notes/{note['id']}", json={"title": None})
    problem = assert_problem(response, 422)
    assert "title" in problem["errors"][0]["msg"]


async def test_malformed_json_gets_a_422_problem(client: httpx.AsyncClient) -> None:
    """A body that is not JSON is a 422 problem, not a 500."""
    response = await client.post(
        "/api/notes", content=b'{"title": ', headers={"Content-Type": "application/json"}
    )
    assert_problem(response, 422)


async def test_non_integer_id_gets_a_422_problem(client: httpx.AsyncClient) -> None:
    """GET /api/notes/abc is a 422 problem about the path."""
    problem = assert_problem(await client.get("/api/notes/abc"), 422)
    assert problem["errors"][0]["loc"] == ["path", "note_id"]


async def test_wrong_method_gets_a_405_problem_with_allow(client: httpx.AsyncClient) -> None:
    """POST on a note is a 405 problem that keeps the Allow header."""
    response = await client.post("/api/notes/1", json={})
    assert_problem(response, 405)
    assert "GET" in response.headers["allow"]
