"""Pieces shared by the server backends (PostgreSQL, MariaDB); standard library only.

The contender modules that work on both servers (the ``databases`` API and SQLAlchemy) live
beside this file; the backend packages :mod:`benchlib.postgresql` and :mod:`benchlib.mysql`
use :func:`run_cli` and :func:`database_name` to create, seed and drop one database per worker
with the server's own command-line client, so that preparing needs no driver at all and works
in every contender's environment (and in the driver, which drops a database a killed worker
left behind).
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator, Sequence

from ..common import RowData, row_data

__all__ = ["CliError", "database_name", "rows", "run_cli", "sql_text"]

#: Every benchmark database name starts with this, so a leftover one is easy to recognise.
PREFIX = "aiodb_bench_"


class CliError(RuntimeError):
    """A command-line client exited with an error."""


def database_name(options: dict[str, str]) -> str:
    """Return the database name the driver chose (option ``database``) or a fresh unique one."""
    name = options.get("database") or f"{PREFIX}{os.getpid()}_{secrets.token_hex(4)}"
    if not name.replace("_", "").isalnum():
        raise ValueError(f"unsafe database name {name!r}")
    return name


def run_cli(cmd: Sequence[str], stdin: str = "", timeout: float = 300.0) -> str:
    """Run a client command, feeding ``stdin``; return its stdout or raise :class:`CliError`."""
    try:
        proc = subprocess.run(
            list(cmd), input=stdin, capture_output=True, text=True, timeout=timeout
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise CliError(f"{' '.join(cmd)}: {exc}") from exc
    if proc.returncode != 0:
        raise CliError(f"{' '.join(cmd)}: exit code {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


def rows(count: int) -> Iterator[RowData]:
    """Yield the ``items`` rows ``1..count`` (the same data as on SQLite)."""
    return map(row_data, range(1, count + 1))


def sql_text(row: RowData, true: str, false: str) -> str:
    """Render one row as a SQL ``VALUES`` tuple with the given boolean literals."""
    active = true if row.active else false
    return f"({row.id}, '{row.name}', {active}, '{row.created_at_text}', {row.score!r})"
