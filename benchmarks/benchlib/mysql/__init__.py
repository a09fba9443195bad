"""MariaDB / MySQL workloads: a fresh database per worker, created and seeded with ``mariadb``.

Standard library only (the ``mariadb`` client, or ``mysql`` when that is what is installed,
does the work), so it runs in every contender's environment and in the driver. The server
defaults to ``127.0.0.1:3306``, user ``root`` without a password; the driver's ``--host``,
``--port`` and ``--user`` options override them.
"""

from __future__ import annotations

import shutil
from typing import Any

from ..common import Sizes
from ..servers import database_name, rows, run_cli, sql_text

__all__ = ["cleanup", "describe", "inspect", "prepare"]

DDL = tuple(
    f"CREATE TABLE {table} ("
    "id INT NOT NULL AUTO_INCREMENT PRIMARY KEY, "
    "name VARCHAR(64) NOT NULL, "
    "active BOOLEAN NOT NULL, "
    "created_at DATETIME(6) NOT NULL, "
    "score DOUBLE NOT NULL) ENGINE=InnoDB"
    for table in ("items", "events", "bulk")
)


def _server(options: dict[str, str]) -> tuple[str, str, str]:
    return (
        options.get("host") or "127.0.0.1",
        options.get("port") or "3306",
        options.get("user") or "root",
    )


def _client(options: dict[str, str], sql: str, database: str = "") -> str:
    host, port, user = _server(options)
    program = shutil.which("mariadb") or shutil.which("mysql") or "mariadb"
    cmd = [program, "--batch", "--skip-column-names", "-h", host, "-P", port, "-u", user]
    if database:
        cmd.append(database)
    return run_cli(cmd, stdin=sql)


def prepare(workdir: str, sizes: Sizes, options: dict[str, str]) -> dict[str, Any]:
    """Create a fresh database, its three tables and ``sizes.table_rows`` items rows.

    Returns the connection facts (``host``, ``port``, ``user``, ``database`` and a ``url``
    without a driver suffix) that the contender modules connect with.
    """
    name = database_name(options)
    host, port, user = _server(options)
    script = f"DROP DATABASE IF EXISTS {name};\nCREATE DATABASE {name};\nUSE {name};\n"
    script += ";\n".join(DDL) + ";\n"
    data = list(rows(sizes.table_rows))
    for start in range(0, len(data), 1000):
        values = ",\n".join(sql_text(r, "TRUE", "FALSE") for r in data[start : start + 1000])
        script += f"INSERT INTO items (id, name, active, created_at, score) VALUES\n{values};\n"
    script += "ANALYZE TABLE items;\n"
    _client(options, script)
    return {
        "host": host,
        "port": int(port),
        "user": user,
        "database": name,
        "url": f"mysql://{user}@{host}:{port}/{name}",
    }


def inspect(target: dict[str, Any]) -> dict[str, Any]:
    """Count the rows the contender wrote (a check that every write was committed)."""
    out = _client(
        {k: str(v) for k, v in target.items()},
        "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM bulk);\n",
        target["database"],
    )
    events, bulk = out.split()
    return {"events_rows": int(events), "bulk_rows": int(bulk)}


def cleanup(target: dict[str, Any]) -> None:
    """Drop the worker's database."""
    options = {k: str(v) for k, v in target.items()}
    _client(options, f"DROP DATABASE IF EXISTS {target['database']};\n")


def describe(options: dict[str, str]) -> str:
    """Return the server's address and version, for the report's header."""
    host, port, user = _server(options)
    version = _client(options, "SELECT VERSION();\n").strip()
    return f"MariaDB/MySQL {version} at {host}:{port}, user {user}"
