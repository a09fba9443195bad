"""The application factory: ``create_app(settings)`` builds one independent service."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from typing import Any

from fastapi import FastAPI

import aiodatabases
from aiodatabases.ext.fastapi import lifespan

from .api import auth_router, health_router, install_docs, notes_router, users_router
from .auth import Auth
from .errors import install_error_handlers
from .limits import BodySizeLimit
from .memory import collector_tuned, tune_malloc
from .repository import utc_now
from .search_index import SearchIndexer
from .settings import Settings
from .web import install_web

__all__ = ["create_app", "database_options"]

DESCRIPTION = """
Notes with a title, a body, tags and a completed flag.

Every note carries an `ETag`; send it back in `If-Match` when you change the note, and a
change made meanwhile by someone else gets `412 Precondition Failed` instead of being
overwritten. Errors are RFC 9457 problem details (`application/problem+json`).

Notes belong to accounts: register at `POST /api/auth/register`, then use **Authorize**
(email as username) and every note route works on your notes only.
"""


def _running(
    database: aiodatabases.Database, settings: Settings
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The lifespan inside the database's: SQLite's background search indexer
    (``notes.search_index``), and Python's collector tuned (``notes.memory``)."""

    @asynccontextmanager
    async def run(app: FastAPI) -> AsyncIterator[None]:
        indexer = SearchIndexer(database, interval=settings.search_index_interval)
        indexer.start()
        try:
            with collector_tuned() if settings.tune_gc else nullcontext():
                yield
        finally:
            await indexer.stop()

    return run


#: SQLite page cache of each pooled connection, KiB (SQLite's default is 2 MiB): the pool's 8
#: connections cache the same pages, and a commit by any of them empties the others' caches
#: at their next read, so 8 x 2 MiB mostly held stale copies while it filled up with the
#: database's growth (docs/notes.md, Memory).
SQLITE_CACHE_KIB = 1024


def database_options(url: aiodatabases.DatabaseURL) -> dict[str, Any]:
    """Options the service sets on its database, unless the URL sets them itself."""
    options: dict[str, Any] = {}
    if url.dialect == "sqlite":
        if "foreign_keys" not in url.options:
            options["foreign_keys"] = True
        if "cache_size" not in url.options:
            options["cache_size"] = -SQLITE_CACHE_KIB
    return options


#: The order in which the OpenAPI document lists the routes, by path prefix: accounts first.
#: Requests are matched in another order (``create_app``), the notes routes first.
_DOCUMENT_ORDER = ("/api/auth/", "/api/users/", "/api/notes", "/health/")


def _document_rank(path: str) -> int:
    for rank, prefix in enumerate(_DOCUMENT_ORDER):
        if path.startswith(prefix):
            return rank
    return len(_DOCUMENT_ORDER)


def _describe(app: FastAPI) -> None:
    """Adjust the OpenAPI document: paths in reading order, optional parameters without null.

    FastAPI renders ``X | None = None`` as ``anyOf: [X, null]``; a query string or header
    cannot carry null, and an absent parameter is what None means, so the schema says X and
    leaves the parameter not required.
    """
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = build()
        paths = document.get("paths", {})
        document["paths"] = dict(sorted(paths.items(), key=lambda item: _document_rank(item[0])))
        for path in document["paths"].values():
            for operation in path.values():
                for parameter in operation.get("parameters", ()):
                    schema = parameter.get("schema", {})
                    options = [o for o in schema.get("anyOf", ()) if o != {"type": "null"}]
                    if "anyOf" in schema and len(options) == 1:
                        rest = {k: v for k, v in schema.items() if k not in {"anyOf", "default"}}
                        parameter["schema"] = {**options[0], **rest}
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented override


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the notes application: its database (connected by the lifespan) and routes.

    Args:
        settings: The configuration; by default read from ``NOTES_*`` environment variables.
    """
    settings = settings if settings is not None else Settings()
    # Before the first password hash (Auth below makes one) and any worker thread: see
    # notes.memory.
    tune_malloc()
    url = aiodatabases.DatabaseURL(settings.database_url.get_secret_value())
    database = aiodatabases.Database(url, **database_options(url))
    app = FastAPI(
        title="Notes",
        version=aiodatabases.__version__,
        description=DESCRIPTION,
        lifespan=lifespan(database, inner=_running(database, settings)),
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json" if settings.docs else None,
    )
    app.state.settings = settings
    # The clock of tokens and notes, read at each use so that tests may replace it; set here
    # so that each read finds it (a missing attribute of Starlette's State costs an exception).
    app.state.clock = utc_now
    app.state.auth = Auth.from_settings(settings, lambda: getattr(app.state, "clock", utc_now)())
    install_error_handlers(app)
    # Routes are matched in this order: the notes routes, which nearly every request is for,
    # first (the document lists them in _DOCUMENT_ORDER).
    app.include_router(notes_router, prefix="/api")
    app.include_router(auth_router, prefix="/api")
    app.include_router(users_router, prefix="/api")
    app.include_router(health_router)
    if settings.docs:
        install_docs(app)
    # The pages at / (sign up, log in, notes): cookie sessions, the same accounts and notes.
    install_web(app, settings)
    _describe(app)
    app.add_middleware(BodySizeLimit, limit=settings.max_body_size)
    return app
