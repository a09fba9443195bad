"""FastAPI integration: a lifespan that connects a Database, dependencies for routes.

```python
database = aiodatabases.Database(url)
app = FastAPI(lifespan=aiodatabases.ext.fastapi.lifespan(database))

@app.post("/notes")
async def create(note: NoteIn, transaction: TransactionDep) -> Note:
    ...   # every query of this request runs in the transaction
```

The transaction of ``TransactionDep`` is committed when the route function returns and its
result has been serialized, before the response is sent: a client never sees a 2xx for a
write that then fails to commit. An exception raised by the route (an ``HTTPException``
included) rolls it back. This needs FastAPI 0.121 or later (dependencies with
``scope="function"``); on older versions the dependencies run with FastAPI's default scope.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request

from .. import Connection, Database, InterfaceError, Transaction

__all__ = [
    "ConnectionDep",
    "DatabaseDep",
    "TransactionDep",
    "connection_dependency",
    "get_connection",
    "get_database",
    "get_transaction",
    "lifespan",
    "transaction_dependency",
]

#: The attribute of ``app.state`` under which the lifespan stores the database.
STATE_ATTRIBUTE = "database"

_HAS_SCOPE = "scope" in inspect.signature(Depends).parameters

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[Any]]


def lifespan(
    database: Database, *, inner: Lifespan | None = None
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Return a FastAPI lifespan that connects ``database`` at startup and disconnects it.

    The database is stored as ``app.state.database``, where the dependencies of this module
    find it.

    Args:
        database: The database to connect; not yet connected.
        inner: The application's own lifespan, run inside (with the database connected).
    """

    @asynccontextmanager
    async def run(app: FastAPI) -> AsyncIterator[None]:
        await database.connect()
        app.state.database = database
        try:
            if inner is None:
                yield
            else:
                async with inner(app):
                    yield
        finally:
            await database.disconnect()

    return run


async def get_database(request: Request) -> Database:
    """Return the application's database (a dependency).

    It is a coroutine function so that FastAPI calls it on the event loop: a plain function
    dependency would be sent to a worker thread on every request, a thread hop (and a wait
    for the GIL) that costs far more than the lookup.

    Raises:
        InterfaceError: No database was stored on ``app.state`` (the lifespan did not run).
    """
    return _app_database(request)


def _app_database(request: Request) -> Database:
    database = getattr(request.app.state, STATE_ATTRIBUTE, None)
    if not isinstance(database, Database):
        raise InterfaceError(
            "get_database(): app.state.database is not set; create the app with "
            "FastAPI(lifespan=aiodatabases.ext.fastapi.lifespan(database))"
        )
    return database


async def get_connection(request: Request) -> AsyncIterator[Connection]:
    """Hold one connection for the route (a dependency); released before the response."""
    async with _app_database(request).connection() as connection:
        yield connection


async def get_transaction(request: Request) -> AsyncIterator[Transaction]:
    """Run the route in a transaction (a dependency): committed before the response is sent.

    The route's queries through the database run in it; an exception rolls it back.
    """
    async with _app_database(request).transaction() as transaction:
        yield transaction


def _no_connection() -> Connection:
    raise InterfaceError("this transaction only validates options")  # pragma: no cover


def _depends(dependency: Callable[..., Any]) -> Any:
    if _HAS_SCOPE:
        return Depends(dependency, scope="function")
    return Depends(dependency)  # pragma: no cover - FastAPI before 0.121


def connection_dependency(database: Database | None = None) -> Any:
    """Return a ``Depends`` holding a connection of ``database`` (default: the app's).

    Typed ``Any``, like FastAPI's ``Depends()``, so that it can be a parameter's default.
    """
    if database is None:
        return _depends(get_connection)
    bound = database

    async def dependency() -> AsyncIterator[Connection]:
        async with bound.connection() as connection:
            yield connection

    return _depends(dependency)


def transaction_dependency(database: Database | None = None, **options: Any) -> Any:
    """Return a ``Depends`` running the route in a transaction with these options.

    Typed ``Any``, like FastAPI's ``Depends()``, so that it can be a parameter's default.

    Args:
        database: The database (default: the app's, from ``app.state.database``).
        **options: Transaction options (``isolation``, ``readonly``...).

    Raises:
        ConfigurationError: An option or its value is unknown.
    """
    Transaction(_no_connection, **options)  # validates the options now, not per request

    async def dependency(request: Request) -> AsyncIterator[Transaction]:
        chosen = database if database is not None else _app_database(request)
        async with chosen.transaction(**options) as transaction:
            yield transaction

    return _depends(dependency)


#: The application's database.
DatabaseDep = Annotated[Database, Depends(get_database)]
#: A connection held for the route and released before the response is sent.
ConnectionDep = Annotated[Connection, _depends(get_connection)]
#: A transaction around the route, committed before the response is sent.
TransactionDep = Annotated[Transaction, _depends(get_transaction)]
