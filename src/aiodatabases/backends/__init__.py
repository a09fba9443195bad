"""Backends: one per driver, chosen by the URL scheme."""

from __future__ import annotations

import importlib
from typing import Any

from .._url import DatabaseURL
from ..exceptions import ConfigurationError
from .base import Backend

__all__ = ["SCHEMES", "create_backend"]

# scheme -> (module, class, extra to install, driver module it needs)
SCHEMES: dict[str, tuple[str, str, str, str | None]] = {
    "sqlite": ("sqlite", "SQLiteBackend", "sqlite", None),
    "sqlite+aiosqlite": ("sqlite", "SQLiteBackend", "sqlite", None),
    "sqlite+pysqlite": ("sqlite", "SQLiteBackend", "sqlite", None),
    "postgresql": ("asyncpg", "AsyncpgBackend", "postgresql", "asyncpg"),
    "postgres": ("asyncpg", "AsyncpgBackend", "postgresql", "asyncpg"),
    "postgresql+asyncpg": ("asyncpg", "AsyncpgBackend", "postgresql", "asyncpg"),
    "mysql": ("asyncmy", "AsyncmyBackend", "mysql", "asyncmy"),
    "mysql+asyncmy": ("asyncmy", "AsyncmyBackend", "mysql", "asyncmy"),
}

_UNSUPPORTED = {
    "mysql+aiomysql": "the aiomysql driver is not supported; use mysql+asyncmy:// "
    "(install aiodatabases[mysql])",
    "postgresql+psycopg": "the psycopg driver is not supported; use postgresql+asyncpg:// "
    "(install aiodatabases[postgresql])",
}


def create_backend(url: DatabaseURL, options: dict[str, Any]) -> Backend:
    """Return the backend for ``url``'s scheme, configured with ``options``.

    Raises:
        ConfigurationError: The scheme is unknown or unsupported, or its driver is missing.
    """
    scheme = url.scheme.lower()
    if not scheme:
        raise ConfigurationError(
            f"malformed database URL {url!r}: it has no scheme; "
            f"expected one of {', '.join(sorted(SCHEMES))}"
        )
    if scheme in _UNSUPPORTED:
        raise ConfigurationError(f"cannot use {url.scheme}://: {_UNSUPPORTED[scheme]}")
    try:
        module_name, class_name, extra, driver = SCHEMES[scheme]
    except KeyError:
        raise ConfigurationError(
            f"unknown database URL scheme {url.scheme!r}; "
            f"supported schemes are {', '.join(sorted(SCHEMES))}"
        ) from None
    if driver is not None:
        try:
            importlib.import_module(driver)
        except ImportError:
            raise ConfigurationError(
                f"{url.scheme}:// needs the {driver} driver, which is not installed; "
                f"install it with: pip install 'aiodatabases[{extra}]'"
            ) from None
    try:
        module = importlib.import_module(f"{__name__}.{module_name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{module_name}":
            raise
        raise ConfigurationError(
            f"{url.scheme}:// is not available in this version of aiodatabases yet"
        ) from None
    backend_class: type[Backend] = getattr(module, class_name)
    return backend_class(url, options)  # type: ignore[call-arg]  # concrete backends take (url, options)
