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
live memory flat) and four hashing threads kept 19 MiB each; with the threshold fixed at
256 KiB, it started at 87 MiB and stayed within 86-97 MiB.

Setting the threshold explicitly (``mallopt(M_MMAP_THRESHOLD)``) also switches glibc's
adjustment off. Nothing is done on other C libraries, or when the environment already sets
``MALLOC_MMAP_THRESHOLD_`` (glibc's own variable; the operator's value wins).
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform

__all__ = ["MMAP_THRESHOLD", "pin_mmap_threshold"]

logger = logging.getLogger("notes.memory")

#: Blocks of this size and above are mapped, and given back as soon as they are freed.
MMAP_THRESHOLD = 256 * 1024

_M_MMAP_THRESHOLD = -3  # <malloc.h>


def pin_mmap_threshold(size: int = MMAP_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold at ``size`` bytes; return whether it was set.

    Call it before the first large allocation that is freed again (the first password hash):
    the heaps grown until then are not shrunk by it. Idempotent; safe to call from several
    application instances in one process.
    """
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    if mallopt(_M_MMAP_THRESHOLD, size) != 1:
        logger.warning("mallopt(M_MMAP_THRESHOLD, %d) failed; memory may grow under load", size)
        return False
    return True
