"""Small helpers shared by the notes tests."""

from __future__ import annotations

from typing import Any

import httpx

PROBLEM_JSON = "application/problem+json"


async def create_note(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    """POST a note (title defaults to "a note") and return the created note."""
    fields.setdefault("title", "a note")
    response = await client.post("/api/notes", json=fields)
    assert response.status_code == 201, response.text
    note: dict[str, Any] = response.json()
    return note


def etag_of(note: dict[str, Any]) -> str:
    """The ETag the API gives a note of this id and version."""
    return f'"{note["id"]}.{note["version"]}"'


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """Check a response is an RFC 9457 problem with this status; return its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert isinstance(body["title"], str)
    assert body["title"]
    assert isinstance(body["type"], str)
    assert body["type"]
    text = response.text.lower()
    assert "traceback" not in text
    assert "select " not in text
    assert "sqlite" not in text
    return body
