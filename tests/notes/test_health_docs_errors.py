"""Health probes, offline API docs, and problem responses for unexpected errors."""

from __future__ import annotations

import datetime as dt
import re

import httpx
import pytest
from fastapi import FastAPI

import aiodatabases
from notes import Settings, create_app
from notes.tables import notes

from .helpers import assert_problem


async def test_live_answers_200(client: httpx.AsyncClient) -> None:
    """GET /health/live answers 200 ok."""
    response = await client.get("/health/live")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_ready_answers_200_when_the_database_answers(client: httpx.AsyncClient) -> None:
    """GET /health/ready answers 200 when a query succeeds."""
    response = await client.get("/health/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}


async def test_ready_answers_503_when_the_database_is_gone(settings: Settings) -> None:
    """With the database disconnected, ready is a 503 problem while live stays 200."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        await app.state.database.disconnect()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            ready = await http.get("/health/ready")
            live = await http.get("/health/live")
    assert_problem(ready, 503)
    assert live.status_code == 200


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
async def test_docs_pages_load_only_assets_the_service_serves(
    client: httpx.AsyncClient, path: str
) -> None:
    """/docs and /redoc reference no external URL, and every asset they load is served."""
    page = await client.get(path)
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    assert not re.search(r"(src|href)=[\"']?https?:", page.text)
    assert "cdn" not in page.text.lower()
    assets = re.findall(r"(?:src|href)=[\"']([^\"']+)[\"']", page.text)
    assert assets
    for asset in assets:
        response = await client.get(asset)
        assert response.status_code == 200, asset
        assert len(response.content) > 100, asset


async def test_openapi_describes_the_notes_api(client: httpx.AsyncClient) -> None:
    """/openapi.json lists the notes routes and the problem schema."""
    schema = (await client.get("/openapi.json")).json()
    assert {"/api/notes", "/api/notes/{note_id}", "/api/notes/batch"} <= set(schema["paths"])
    assert "Problem" in schema["components"]["schemas"]


async def test_openapi_every_notes_operation_needs_the_bearer_token(
    client: httpx.AsyncClient,
) -> None:
    """Routes that read the caller themselves (for speed) still declare the scheme, and the
    read route keeps its documented parameters and response."""
    paths = (await client.get("/openapi.json")).json()["paths"]
    for path, operations in paths.items():
        if path.startswith("/api/notes"):
            for method, operation in operations.items():
                assert operation.get("security") == [{"OAuth2PasswordBearer": []}], (method, path)
    read = paths["/api/notes/{note_id}"]["get"]
    assert [(p["name"], p["in"]) for p in read["parameters"]] == [
        ("note_id", "path"),
        ("if-none-match", "header"),
    ]
    assert read["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Note"
    }


async def test_openapi_lists_accounts_then_notes_then_health(client: httpx.AsyncClient) -> None:
    """The document reads in order: log in first, then the notes, then the probes.

    Requests are matched against the notes routes first; the document keeps reading order.
    """
    paths = list((await client.get("/openapi.json")).json()["paths"])
    assert paths == [
        "/api/auth/register",
        "/api/auth/token",
        "/api/auth/refresh",
        "/api/auth/logout",
        "/api/users/me",
        "/api/users/me/password",
        "/api/notes",
        "/api/notes/batch",
        "/api/notes/{note_id}",
        "/health/live",
        "/health/ready",
    ]


async def test_docs_can_be_switched_off(settings: Settings) -> None:
    """With docs=False there is no /docs, /redoc or /openapi.json."""
    app = create_app(settings.model_copy(update={"docs": False}))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert_problem(await http.get(path), 404)


def add_failing_route(app: FastAPI) -> None:
    """Add a route that fails the way a bug would, with SQL and a secret in the message."""

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("SELECT password FROM users -- secret detail")


async def test_unexpected_error_is_a_500_problem_without_details(app: FastAPI) -> None:
    """An unhandled error answers a 500 problem without message, SQL or traceback."""
    add_failing_route(app)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        response = await http.get("/boom")
    problem = assert_problem(response, 500)
    assert "secret" not in response.text
    assert "password" not in response.text
    assert problem["detail"] == "An unexpected error occurred."


async def test_integrity_error_from_the_database_is_a_409_problem(app: FastAPI) -> None:
    """A write the database refuses as a conflict answers a 409 problem without its SQL."""
    database: aiodatabases.Database = app.state.database

    @app.post("/clash")
    async def clash() -> None:
        values = {
            "title": "t",
            "body": "",
            "completed": False,
            "version": 1,
            "created_at": dt.datetime.now(dt.UTC),
            "updated_at": dt.datetime.now(dt.UTC),
        }
        await database.execute(notes.insert(), {"id": 7, **values})
        await database.execute(notes.insert(), {"id": 7, **values})

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        response = await http.post("/clash")
    problem = assert_problem(response, 409)
    assert "insert" not in response.text.lower()
    assert problem["detail"] == "The change conflicts with the stored data."


async def test_unknown_path_is_a_404_problem(client: httpx.AsyncClient) -> None:
    """An unknown path answers a 404 problem."""
    problem = assert_problem(await client.get("/api/nothing-here"), 404)
    assert problem["instance"] == "/api/nothing-here"
