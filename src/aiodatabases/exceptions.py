"""The error tree of aiodatabases.

Misuse of the API (``InterfaceError``) is kept apart from refusals by the server or the driver
(``DatabaseError``). Errors raised by a driver are translated at the backend boundary into a
class that subclasses both the matching class here and the driver's own class, so code written
against the driver (``except sqlite3.IntegrityError``) keeps working.
"""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "DataError",
    "DatabaseError",
    "Error",
    "IntegrityError",
    "InterfaceError",
    "NotConnectedError",
    "NotSupportedError",
    "OperationalError",
    "PoolTimeoutError",
    "ProgrammingError",
    "QueryTimeoutError",
    "TransactionStateError",
]


class Error(Exception):
    """The root of every error raised by aiodatabases."""


class InterfaceError(Error):
    """The API was used wrongly; retrying the same call will fail the same way."""


class ConfigurationError(InterfaceError):
    """A URL, an option or an installed driver is not what the backend needs."""


class NotConnectedError(InterfaceError):
    """A query was made on a database that is not connected."""


class TransactionStateError(InterfaceError):
    """A transaction was committed or rolled back in the wrong state, order or task."""


class DatabaseError(Error):
    """The server or the driver refused the operation.

    Attributes:
        sqlstate: The SQLSTATE code when the driver reports one, else ``None``.
        retryable: ``True`` when running the whole transaction again may succeed: a
            serialization failure, a deadlock, a lock wait that timed out, a busy database.
            ``Database.run_in_transaction`` retries on exactly these.
    """

    sqlstate: str | None = None
    retryable: bool = False


class OperationalError(DatabaseError):
    """The operation failed for a reason outside the statement: lost connection, lock, timeout."""


class PoolTimeoutError(OperationalError, TimeoutError):
    """No pooled connection became free within the pool timeout."""


class QueryTimeoutError(OperationalError, TimeoutError):
    """A statement ran longer than the command timeout and was interrupted."""


class IntegrityError(DatabaseError):
    """A constraint (unique, foreign key, not null, check) was violated."""


class ProgrammingError(DatabaseError):
    """The statement is wrong: a syntax error, an unknown table, a missing parameter."""


class DataError(DatabaseError):
    """A value does not fit its column: out of range, wrong type, bad encoding."""


class NotSupportedError(DatabaseError):
    """The backend does not support what the statement asks for."""
