"""PostgreSQL workloads: a fresh database per worker, created and seeded with ``psql``.

Standard library only (``psql`` does the work), so it runs in every contender's environment
and in the driver. The server defaults to ``127.0.0.1:5432``, user ``postgres`` with trust
authentication; the driver's ``--host``, ``--port`` and ``--user`` options override them.
"""

from __future__ import annotations

from typing import Any

from ..common import Sizes
from ..servers import database_name, rows, run_cli, sql_text

__all__ = ["cleanup", "describe", "inspect", "prepare"]

DDL = tuple(
    f"CREATE TABLE {table} ("
    "id SERIAL PRIMARY KEY, "
    "name VARCHAR(64) NOT NULL, "
    "active BOOLEAN NOT NULL, "
    "created_at TIMESTAMP WITHOUT TIME ZONE NOT NULL, "
    "score DOUBLE PRECISION NOT NULL)"
    for table in ("items", "events", "bulk")
)


def _server(options: dict[str, str]) -> tuple[str, str, str]:
    return (
        options.get("host") or "127.0.0.1",
        options.get("port") or "5432",
        options.get("user") or "postgres",
    )


def _psql(options: dict[str, str], database: str, sql: str) -> str:
    host, port, user = _server(options)
    cmd = ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]
    cmd += ["-h", host, "-p", port, "-U", user, "-d", database]
    return run_cli(cmd, stdin=sql)


def prepare(workdir: str, sizes: Sizes, options: dict[str, str]) -> dict[str, Any]:
    """Create a fresh database, its three tables and ``sizes.table_rows`` items rows.

    Returns the connection facts (``host``, ``port``, ``user``, ``database`` and a ``url``
    without a driver suffix) that the contender modules connect with.
    """
    name = database_name(options)
    host, port, user = _server(options)
    _psql(options, "postgres", f"DROP DATABASE IF EXISTS {name} WITH (FORCE);\n")
    _psql(options, "postgres", f"CREATE DATABASE {name};\n")
    values = ",\n".join(sql_text(r, "true", "false") for r in rows(sizes.table_rows))
    script = ";\n".join(DDL) + ";\n"
    script += f"INSERT INTO items (id, name, active, created_at, score) VALUES\n{values};\n"
    script += "SELECT setval(pg_get_serial_sequence('items', 'id'), max(id)) FROM items;\n"
    script += "VACUUM ANALYZE items;\n"
    _psql(options, name, script)
    return {
        "host": host,
        "port": int(port),
        "user": user,
        "database": name,
        "url": f"postgresql://{user}@{host}:{port}/{name}",
    }


def inspect(target: dict[str, Any]) -> dict[str, Any]:
    """Count the rows the contender wrote (a check that every write was committed)."""
    out = _psql(
        {k: str(v) for k, v in target.items()},
        target["database"],
        "SELECT (SELECT count(*) FROM events) || ',' || (SELECT count(*) FROM bulk);\n",
    )
    events, bulk = out.strip().split(",")
    return {"events_rows": int(events), "bulk_rows": int(bulk)}


def cleanup(target: dict[str, Any]) -> None:
    """Drop the worker's database (closing any session still connected to it)."""
    options = {k: str(v) for k, v in target.items()}
    _psql(options, "postgres", f"DROP DATABASE IF EXISTS {target['database']} WITH (FORCE);\n")


def describe(options: dict[str, str]) -> str:
    """Return the server's address and version, for the report's header."""
    host, port, user = _server(options)
    version = _psql(options, "postgres", "SHOW server_version;\n").strip()
    return f"PostgreSQL {version} at {host}:{port}, user {user}"
