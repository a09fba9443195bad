"""aiodatabases: async SQL for asyncio, a drop-in successor to ``databases``.

``import aiodatabases as databases`` runs code written for ``databases`` 0.9.
"""

from __future__ import annotations

from ._connection import Connection
from ._database import Database
from ._records import Record
from ._transaction import Transaction, TransactionState
from ._url import DatabaseURL
from .backends.base import PoolStats
from .exceptions import (
    ConfigurationError,
    DatabaseError,
    DataError,
    Error,
    IntegrityError,
    InterfaceError,
    NotConnectedError,
    NotSupportedError,
    OperationalError,
    PoolTimeoutError,
    ProgrammingError,
    QueryTimeoutError,
    TransactionStateError,
)

__version__ = "0.1.0"

__all__ = [
    "ConfigurationError",
    "Connection",
    "DataError",
    "Database",
    "DatabaseError",
    "DatabaseURL",
    "Error",
    "IntegrityError",
    "InterfaceError",
    "NotConnectedError",
    "NotSupportedError",
    "OperationalError",
    "PoolStats",
    "PoolTimeoutError",
    "ProgrammingError",
    "QueryTimeoutError",
    "Record",
    "Transaction",
    "TransactionState",
    "TransactionStateError",
    "__version__",
]
