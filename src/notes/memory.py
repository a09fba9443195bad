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
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform

__all__ = ["ARENA_MAX", "MMAP_THRESHOLD", "tune_malloc"]

logger = logging.getLogger("notes.memory")

#: Blocks of this size and above are mapped, and given back as soon as they are freed.
MMAP_THRESHOLD = 256 * 1024

#: At most this many malloc arenas (the main one included) for all threads.
ARENA_MAX = 2

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
