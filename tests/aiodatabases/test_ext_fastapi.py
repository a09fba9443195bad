"""aiodatabases.ext.fastapi: lifespan, and connection and transaction dependencies."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI, HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import aiodatabases
from aiodatabases.ext.fastapi import (
    ConnectionDep,
    DatabaseDep,
    TransactionDep,
    connection_dependency,
    lifespan,
    transaction_dependency,
)

from .tables import notes

CountSeen = list[int]


class Boom(Exception):
    """Raised by a route after it wrote, to check the write is rolled back."""


def notes_app(database: aiodatabases.Database) -> FastAPI:
    """An app whose routes write notes through the dependencies under test."""
    app = FastAPI(lifespan=lifespan(database))

    @app.post("/notes", status_code=201)
    async def create(text: str, transaction: TransactionDep, db: DatabaseDep) -> dict[str, Any]:
        note_id = await db.execute(notes.insert(), {"text": text, "completed": False})
        return {"id": note_id, "state": transaction.state.value}

    @app.post("/fail")
    async def fail(db: DatabaseDep, _: TransactionDep) -> None:
        await db.execute(notes.insert(), {"text": "doomed", "completed": False})
        raise Boom

    @app.post("/http-error")
    async def http_error(db: DatabaseDep, _: TransactionDep) -> None:
        await db.execute(notes.insert(), {"text": "doomed", "completed": False})
        raise HTTPException(status_code=409, detail="conflict")

    @app.get("/connection")
    async def held(connection: ConnectionDep, db: DatabaseDep) -> dict[str, Any]:
        count = await db.fetch_val(sa.select(sa.func.count()).select_from(notes))
        return {"same": db.connection() is connection, "count": count}

    return app


@asynccontextmanager
async def serve(app: ASGIApp | FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan and yield an in-process client."""
    assert isinstance(app, FastAPI)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


async def count_notes(url: aiodatabases.DatabaseURL) -> int:
    """Count the notes from a separate pool, so only committed rows are seen."""
    async with aiodatabases.Database(url) as other:
        count: int = await other.fetch_val(sa.select(sa.func.count()).select_from(notes))
        return count


def watch_response_start(app: ASGIApp, url: aiodatabases.DatabaseURL, seen: CountSeen) -> ASGIApp:
    """Wrap app so that, when a response starts, the committed note count is recorded."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        async def watching_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen.append(await count_notes(url))
            await send(message)

        await app(scope, receive, watching_send)

    return wrapped


async def test_lifespan_connects_the_database_and_disconnects_it_at_shutdown(
    sqlite_url: str,
) -> None:
    """The lifespan connects at startup, stores app.state.database and disconnects after."""
    database = aiodatabases.Database(sqlite_url)
    app = FastAPI(lifespan=lifespan(database))
    async with app.router.lifespan_context(app):
        assert database.is_connected
        assert app.state.database is database
    assert not database.is_connected


async def test_lifespan_runs_the_inner_lifespan_with_the_database_connected(
    sqlite_url: str,
) -> None:
    """An application lifespan given as inner runs inside, with the database connected."""
    database = aiodatabases.Database(sqlite_url)
    events: list[str] = []

    @asynccontextmanager
    async def inner(app: FastAPI) -> AsyncIterator[None]:
        events.append(f"start connected={database.is_connected}")
        yield
        events.append(f"stop connected={database.is_connected}")

    app = FastAPI(lifespan=lifespan(database, inner=inner))
    async with app.router.lifespan_context(app):
        pass
    assert events == ["start connected=True", "stop connected=True"]
    assert not database.is_connected


async def test_transaction_is_committed_before_the_response_starts(
    database: aiodatabases.Database,
) -> None:
    """A write through TransactionDep is visible to other connections when the 201 starts."""
    app = notes_app(database)
    seen: CountSeen = []
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=watch_response_start(app, database.url, seen))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            response = await client.post("/notes", params={"text": "hello"})
    assert response.status_code == 201
    assert response.json()["state"] == "active"
    assert seen == [1]


async def test_exception_in_the_route_rolls_the_transaction_back(
    database: aiodatabases.Database,
) -> None:
    """A route that writes then raises leaves nothing behind."""
    app = notes_app(database)
    async with serve(app) as client:
        with pytest.raises(Boom):
            await client.post("/fail")
    assert await count_notes(database.url) == 0


async def test_http_exception_rolls_back_and_its_response_is_sent(
    database: aiodatabases.Database,
) -> None:
    """An HTTPException from the route rolls the write back and still answers its status."""
    app = notes_app(database)
    async with serve(app) as client:
        response = await client.post("/http-error")
    assert response.status_code == 409
    assert await count_notes(database.url) == 0


async def test_concurrent_requests_each_commit_their_own_transaction(
    database: aiodatabases.Database,
) -> None:
    """Twenty concurrent writes through TransactionDep all commit with distinct ids."""
    app = notes_app(database)
    async with serve(app) as client:
        responses = await asyncio.gather(
            *(client.post("/notes", params={"text": f"n{i}"}) for i in range(20))
        )
    assert [response.status_code for response in responses] == [201] * 20
    assert len({response.json()["id"] for response in responses}) == 20
    assert await count_notes(database.url) == 20


async def test_connection_dependency_is_the_connection_the_route_queries_on(
    database: aiodatabases.Database,
) -> None:
    """Inside a route, database.connection() is the held connection, released afterwards."""
    app = notes_app(database)
    async with serve(app) as client:
        response = await client.get("/connection")
        assert database.pool_stats().in_use == 0
    assert response.json() == {"same": True, "count": 0}


async def test_dependency_without_the_lifespan_raises_a_helpful_interface_error(
    sqlite_url: str,
) -> None:
    """A route using the dependencies in an app without the lifespan explains what is missing."""
    app = FastAPI()

    @app.get("/")
    async def route(db: DatabaseDep) -> None:
        raise AssertionError("not reached")  # pragma: no cover

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        with pytest.raises(aiodatabases.InterfaceError, match=r"lifespan\(database\)"):
            await client.get("/")


async def test_bound_dependencies_use_the_database_they_were_given(sqlite_url: str) -> None:
    """connection_dependency(db) and transaction_dependency(db) need no app.state."""
    database = aiodatabases.Database(sqlite_url)
    app = FastAPI()

    # Defaults, not Annotated: string annotations cannot name this function's locals.
    @app.get("/")
    async def route(
        connection: aiodatabases.Connection = connection_dependency(database),  # noqa: B008
        transaction: aiodatabases.Transaction = transaction_dependency(database),  # noqa: B008
    ) -> dict[str, Any]:
        value = await connection.fetch_val("SELECT 41 + 1")
        return {"value": value, "same": transaction.connection is connection}

    async with database:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            response = await client.get("/")
    assert response.json() == {"value": 42, "same": True}


def test_transaction_dependency_rejects_an_unknown_option_at_once() -> None:
    """A misspelt transaction option is a ConfigurationError when the dependency is built."""
    with pytest.raises(aiodatabases.ConfigurationError, match="isolaton"):
        transaction_dependency(isolaton="serializable")


async def test_transaction_dependency_passes_its_options(sqlite_url: str) -> None:
    """transaction_dependency(readonly=True) gives the route a read-only transaction."""
    database = aiodatabases.Database(sqlite_url)
    app = FastAPI(lifespan=lifespan(database))

    @app.post("/")
    async def route(
        db: DatabaseDep,
        _: Annotated[aiodatabases.Transaction, transaction_dependency(readonly=True)],
    ) -> None:
        await db.execute("CREATE TABLE t (x INTEGER)")

    async with serve(app) as client:
        with pytest.raises(aiodatabases.DatabaseError):
            await client.post("/")


async def test_failed_commit_never_sends_a_success_response(sqlite_url: str) -> None:
    """When COMMIT fails (a deferred foreign key), the client gets an error, not a 2xx."""
    metadata = sa.MetaData()
    parents = sa.Table("parents", metadata, sa.Column("id", sa.Integer, primary_key=True))
    children = sa.Table(
        "children",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "parent_id",
            sa.Integer,
            sa.ForeignKey("parents.id", deferrable=True, initially="DEFERRED"),
            nullable=False,
        ),
    )
    database = aiodatabases.Database(sqlite_url, foreign_keys=True)
    app = FastAPI(lifespan=lifespan(database))
    statuses: list[int] = []

    @app.exception_handler(aiodatabases.IntegrityError)
    async def integrity(request: Any, exc: Exception) -> Any:
        from fastapi.responses import JSONResponse

        return JSONResponse({"detail": "conflict"}, status_code=409)

    @app.post("/children", status_code=201)
    async def create(db: DatabaseDep, _: TransactionDep) -> dict[str, str]:
        await db.execute(children.insert(), {"parent_id": 999})
        return {"created": "yes"}

    async def recording(scope: Scope, receive: Receive, send: Send) -> None:
        async def record(message: Message) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])
            await send(message)

        await app(scope, receive, record)

    async with app.router.lifespan_context(app):
        for table in (parents, children):
            await database.execute(sa.schema.CreateTable(table))
        transport = httpx.ASGITransport(app=recording)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            response = await client.post("/children")
        rows = await database.fetch_all(children.select())
    assert response.status_code == 409
    assert statuses == [409]
    assert rows == []
