"""SQLite's search index: the queued notes, indexed in batches.

On SQLite the triggers of ``tables.SQLITE_SEARCH_DDL`` queue every new or changed note in
``notes_fts_pending`` instead of indexing it in the commit that writes it: FTS5 writes an
index segment per commit, which cost a single-note ``INSERT`` more than the note itself. The
queue is moved into the FTS5 index here, many notes per transaction:

- before every search (``catch_up``), so a search sees every note committed before it;
- in the background (``SearchIndexer``, started by the application), so that a search rarely
  finds much to do.

Each batch is one transaction: its notes are indexed and leave the queue together, so a crash
loses nothing (the queue is in the database; the next batch takes it up). Several processes
on one database file are safe: SQLite runs their batches one after another, and a note is
indexed by whichever comes first. PostgreSQL and MySQL/MariaDB index in the writing
statement; nothing here runs for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import aiodatabases

__all__ = [
    "BATCH",
    "INTERVAL",
    "SearchIndexer",
    "applies",
    "catch_up",
    "index_pending",
    "pending",
]

logger = logging.getLogger("notes.search_index")

#: Notes indexed per transaction: large enough to share FTS5's per-commit cost, small enough
#: that a batch holds the database's write lock for a few milliseconds only.
BATCH = 500

#: Seconds between background passes (the service's ``search_index_interval`` setting).
INTERVAL = 0.5

# The highest queued id among the first BATCH of the queue: both statements of a batch take
# the same notes (nothing else writes while the batch's transaction holds the write lock).
_UPTO = (
    "(SELECT max(note_id) FROM "
    "(SELECT note_id FROM notes_fts_pending ORDER BY note_id LIMIT :batch))"
)
_INDEX = (
    "INSERT INTO notes_fts(rowid, title, body) "
    "SELECT notes.id, notes.title, notes.body FROM notes_fts_pending "
    "JOIN notes ON notes.id = notes_fts_pending.note_id "
    f"WHERE notes_fts_pending.note_id <= {_UPTO}"
)
_DEQUEUE = f"DELETE FROM notes_fts_pending WHERE note_id <= {_UPTO}"
_ANY = "SELECT EXISTS (SELECT 1 FROM notes_fts_pending)"
_COUNT = "SELECT COUNT(*) FROM notes_fts_pending"


def applies(database: aiodatabases.Database) -> bool:
    """True when the database indexes through the queue (SQLite)."""
    return database.url.dialect == "sqlite"


async def pending(database: aiodatabases.Database) -> int:
    """The number of notes waiting to be indexed (0 where there is no queue)."""
    if not applies(database):
        return 0
    return int(await database.fetch_val(_COUNT) or 0)


async def index_pending(database: aiodatabases.Database, *, batch: int = BATCH) -> int:
    """Index every queued note, ``batch`` per transaction; return how many were indexed.

    Raises:
        ValueError: ``batch`` is below 1.
        aiodatabases.DatabaseError: The database failed; the batch in progress is rolled back
            and stays queued.
    """
    if batch < 1:
        raise ValueError(f"batch must be at least 1, not {batch}")
    if not applies(database):
        return 0
    total = 0
    while True:
        async with database.transaction():
            await database.execute(_INDEX, {"batch": batch})
            done = int(await database.execute(_DEQUEUE, {"batch": batch}))
        total += done
        if done < batch:
            return total


async def catch_up(database: aiodatabases.Database) -> None:
    """Index what is queued, if anything: a search after this sees every committed note."""
    if applies(database) and await database.fetch_val(_ANY):
        await index_pending(database)


class SearchIndexer:
    """Index the queue every ``interval`` seconds, in the background, while started.

    Args:
        database: A connected database; on backends other than SQLite the indexer does nothing.
        interval: Seconds between passes.
    """

    def __init__(self, database: aiodatabases.Database, *, interval: float = INTERVAL) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be positive, not {interval}")
        self._database = database
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the background passes (once; a no-op on other backends)."""
        if self._task is None and applies(self._database):
            self._task = asyncio.create_task(self._run(), name="notes search indexer")

    async def stop(self) -> None:
        """Stop the passes, then index what is left (best effort: it is kept queued on failure)."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        try:
            await index_pending(self._database)
        except Exception as exc:  # the queue stays in the database: the next start takes it up
            logger.warning("indexing the queued notes at shutdown failed: %r", exc)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await catch_up(self._database)
            except Exception as exc:  # a failed pass leaves the queue as it was; retry later
                logger.warning("indexing the queued notes failed: %r", exc)
