"""Keep the service's memory from ratcheting up under glibc's malloc.

glibc serves an allocation above its *mmap threshold* with a private mapping that goes back to
the system when freed; smaller ones come from heaps that are only given back from their top.
By default the threshold moves: whenever a mapped block is freed, the threshold rises to that
block's size (up to 32 MiB) and the heap trim threshold to twice that. The service frees such
a block at its very first password hash (Argon2id holds 19 MiB or more while it runs, see
``passwords.py``), so from then on every buffer below 19 MiB (SQLite's page caches and FTS5
merges, Argon2id's own buffers in each hashing thread) came from the heaps, and the heaps
were not trimmed until 38 MiB lay free at their top. Measured with
``benchmarks/http/held_load.py --backend sqlite``: the server's resident memory grew 22% in
five minutes of steady load (from 170 to 209 MiB, with Python's and SQLite's own counts of
live memory flat), and four hashing threads kept 19 MiB each.

Setting the threshold explicitly (``mallopt(M_MMAP_THRESHOLD)``) also switches glibc's
adjustment off.

The rest of the growth was in glibc's per-thread arenas: each thread that allocates gets an
arena of its own (up to eight per core), and a thread that ran some of SQLite's statements
(a write inside a transaction, a slow read, a checkpoint) kept a few MiB of the pages it had
cached; as the load went on, new worker threads came and each kept its own few MiB (five of
them added 15 MiB in five minutes). With the arenas limited to two (``M_ARENA_MAX``, the usual
``MALLOC_ARENA_MAX=2`` of Python and Ruby servers), threads reuse each other's free memory.
Both together: the same load started at 80 MiB instead of 157 MiB and grew with what SQLite
had in use (its page caches filling as the database grew), no longer beyond it.

Nothing is done on other C libraries, or for a setting the environment already makes
(``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_ARENA_MAX``: glibc's own variables; the operator's value
wins).

Python's cyclic garbage collector is tuned while the service runs (``collector_tuned``). Its
youngest generation is collected whenever 700 more container objects have been made than
freed, and 64 requests in flight hold more than that between them: under 64 connections of
creates on SQLite the service ran about 130 young collections a second, and about every 130th
of those examined all 110,000 objects of the process (66 ms each, the loop stopped meanwhile).
Measured over 8 s of that load: 0.87 s in the collector. The objects made at startup (the
application, its routes and models, SQLAlchemy's tables) are frozen out of the collector's
passes, and the youngest generation waits for 10,000: with both, the same 8 s ran one young
collection, and the service served 8-22% more creates (three paired runs; docs/notes.md).
"""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import platform
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["ARENA_MAX", "GC_THRESHOLD", "MMAP_THRESHOLD", "collector_tuned", "tune_malloc"]

logger = logging.getLogger("notes.memory")

#: Blocks of this size and above are mapped, and given back as soon as they are freed.
MMAP_THRESHOLD = 256 * 1024

#: At most this many malloc arenas (the main one included) for all threads.
ARENA_MAX = 2

#: The youngest generation of Python's collector waits for this many new container objects.
GC_THRESHOLD = 10_000

_M_MMAP_THRESHOLD = -3  # <malloc.h>
_M_ARENA_MAX = -8


def tune_malloc(mmap_threshold: int = MMAP_THRESHOLD, arena_max: int = ARENA_MAX) -> list[str]:
    """Fix glibc's mmap threshold and limit its arenas; return the settings made.

    Call it early, before the first large allocation that is freed again (the first password
    hash) and before worker threads start: heaps and arenas made until then stay. Idempotent.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return []
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return []
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    made = []
    for variable, option, value in (
        ("MALLOC_MMAP_THRESHOLD_", _M_MMAP_THRESHOLD, mmap_threshold),
        ("MALLOC_ARENA_MAX", _M_ARENA_MAX, arena_max),
    ):
        if variable in os.environ:
            continue
        if mallopt(option, value) == 1:
            made.append(f"{variable.rstrip('_')}={value}")
        else:
            logger.warning("mallopt for %s=%d failed; memory may grow under load", variable, value)
    return made


@contextmanager
def collector_tuned(threshold: int = GC_THRESHOLD) -> Iterator[bool]:
    """While in the block: the objects that exist at its start are frozen out of the
    collector's passes, and the youngest generation is collected after ``threshold`` new
    container objects instead of fewer. Yields whether it tuned anything.

    Enter it once the application is built and started, so that what startup made is
    frozen. At the end the objects are unfrozen (they can be collected again once they are
    unreachable, as those of an application a test stopped) and the threshold is restored
    unless someone changed it meanwhile. A collector that is switched off, or already given
    a higher threshold, is left alone.
    """
    old = gc.get_threshold()
    if not gc.isenabled() or old[0] >= threshold:
        yield False
        return
    gc.collect()  # what startup left as garbage is not frozen with the rest
    gc.freeze()
    gc.set_threshold(threshold, *old[1:])
    logger.debug(
        "garbage collector: %d objects frozen, threshold %d", gc.get_freeze_count(), threshold
    )
    try:
        yield True
    finally:
        if gc.get_threshold()[0] == threshold:
            gc.set_threshold(*old)
        gc.unfreeze()
