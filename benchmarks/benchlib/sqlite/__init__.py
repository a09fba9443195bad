"""SQLite workloads: database preparation and one module per contender.

:func:`prepare` builds a fresh database file with the standard library only, so every contender
starts from byte-identical data whatever library it uses afterwards.
"""

from __future__ import annotations

import os
import sqlite3
from typing import Any

from ..common import SQLITE_DDL, Sizes, row_data

__all__ = ["inspect", "prepare"]


def prepare(workdir: str, sizes: Sizes, options: dict[str, str]) -> dict[str, Any]:
    """Create and seed ``bench.db`` in ``workdir`` and return the connection facts for workers.

    The ``items`` table gets ``sizes.table_rows`` rows; ``events`` and ``bulk`` start empty.
    The journal mode is left at SQLite's default (``delete``) unless the ``journal_mode`` option
    is given (``--journal-mode wal`` on the driver's command line); ``journal_mode`` is stored in
    the file, so it then applies to every connection any library opens.
    """
    path = os.path.join(os.path.abspath(workdir), "bench.db")
    if os.path.exists(path):
        os.remove(path)
    conn = sqlite3.connect(path)
    try:
        journal_mode = options.get("journal_mode", "")
        if journal_mode:
            conn.execute(f"PRAGMA journal_mode={journal_mode}").fetchall()
        for ddl in SQLITE_DDL:
            conn.execute(ddl)
        conn.executemany(
            "INSERT INTO items (id, name, active, created_at, score) VALUES (?, ?, ?, ?, ?)",
            (
                (r.id, r.name, r.active, r.created_at_text, r.score)
                for r in map(row_data, range(1, sizes.table_rows + 1))
            ),
        )
        conn.commit()
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        conn.close()
    return {"path": path, "journal_mode": mode}


def inspect(target: dict[str, Any]) -> dict[str, Any]:
    """Report the state a contender left the database in (its journal mode after the run)."""
    conn = sqlite3.connect(target["path"])
    try:
        out: dict[str, Any] = {
            "journal_mode_after": conn.execute("PRAGMA journal_mode").fetchone()[0]
        }
        for table in ("events", "bulk"):
            out[f"{table}_rows"] = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        return out
    finally:
        conn.close()
