"""Create and seed the ``notes`` table of the minimal contenders (run in the http-main env).

```
python seed.py postgresql://postgres@127.0.0.1:5432/bench_http_min 10000
python seed.py sqlite:////tmp/x/notes.db 10000
```

PostgreSQL: the table is dropped and created again, filled with COPY and analyzed. SQLite: a
fresh file in WAL mode (every contender then runs on the same kind of file).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys

DDL = "CREATE TABLE notes (id {pk}, text VARCHAR(200), completed BOOLEAN)"


def rows(count: int) -> list[tuple[str, bool]]:
    """The seeded notes: numbered texts, every third one completed."""
    return [(f"note number {i} about the weather", i % 3 == 0) for i in range(1, count + 1)]


async def seed_postgresql(dsn: str, count: int) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("DROP TABLE IF EXISTS notes")
        await conn.execute(DDL.format(pk="SERIAL PRIMARY KEY"))
        await conn.copy_records_to_table(
            "notes", records=rows(count), columns=["text", "completed"]
        )
        await conn.execute("VACUUM ANALYZE notes")
    finally:
        await conn.close()


def seed_sqlite(path: str, count: int) -> None:
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.unlink(path + suffix)
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA journal_mode=wal")
        conn.execute(DDL.format(pk="INTEGER PRIMARY KEY"))
        conn.executemany("INSERT INTO notes (text, completed) VALUES (?, ?)", rows(count))
        conn.commit()
        conn.execute("ANALYZE")
    finally:
        conn.close()


def main() -> None:
    dsn, count = sys.argv[1], int(sys.argv[2])
    if dsn.startswith("postgresql://"):
        asyncio.run(seed_postgresql(dsn, count))
    else:
        seed_sqlite(dsn.removeprefix("sqlite:///"), count)


if __name__ == "__main__":
    main()
