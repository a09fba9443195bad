"""The service tunes glibc's malloc (freed large buffers go back to the system, and threads
share two arenas instead of keeping one each) and, while it runs, Python's collector."""

from __future__ import annotations

import gc
import os
import platform
import subprocess
import sys
import textwrap

import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from aiodatabases import DatabaseURL
from notes import Settings, create_app
from notes.app import SQLITE_CACHE_KIB, database_options
from notes.memory import ARENA_MAX, GC_THRESHOLD, collector_tuned, tune_malloc

glibc_only = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
    reason="glibc's malloc only",
)

# Frees one 19 MiB block (as the first Argon2id hash does), then allocates, touches and frees
# another, and prints how much of it the process still holds.
_PROBE = textwrap.dedent(
    """
    import ctypes, sys

    def rss_kib():
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])

    if sys.argv[1] == "tune":
        from notes.memory import tune_malloc
        assert tune_malloc()
    elif sys.argv[1] == "app":
        from notes import Settings, create_app
        create_app(Settings(database_url="sqlite:///:memory:"))

    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    size = 19 * 1024 * 1024
    for _ in range(2):
        block = libc.malloc(size)
        before = rss_kib()
        ctypes.memset(block, 1, size)
        libc.free(block)
    print(rss_kib() - before)
    """
)


# Eight threads, alive at once, each allocating; prints how many arenas besides the main one
# the process then has. A thread arena's heap reserves 64 MiB at a 64 MiB-aligned address: an
# anonymous read-write part from its start, the rest mapped without access up to its end. (An
# anonymous mapping that merely starts at such an address, one of Python's 1 MiB object arenas
# say, is not one.)
_ARENAS = textwrap.dedent(
    """
    import sys, threading

    if sys.argv[1] == "tune":
        from notes.memory import tune_malloc
        assert tune_malloc()

    barrier = threading.Barrier(9)
    kept = []

    def work():
        kept.append([bytearray(2000) for _ in range(200)])
        barrier.wait()
        barrier.wait()

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    barrier.wait()
    heap_size = 64 << 20
    mappings = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            start, end = (int(bound, 16) for bound in fields[0].split("-"))
            mappings.append((start, end, fields[1], len(fields) == 5))
    heaps = 0
    for index, (start, end, perms, anonymous) in enumerate(mappings):
        if not (anonymous and perms.startswith("rw") and start % heap_size == 0):
            continue
        reach = end
        for after_start, after_end, after_perms, after_anonymous in mappings[index + 1 :]:
            if reach >= start + heap_size or after_start != reach:
                break
            if not (after_anonymous and after_perms.startswith("---")):
                break
            reach = after_end
        if reach == start + heap_size:
            heaps += 1
    barrier.wait()
    for thread in threads:
        thread.join()
    print(heaps)
    """
)


def _run(probe: str, mode: str, **env: str) -> int:
    """Run a probe in a fresh interpreter without glibc's variables; return its last line."""
    environ = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_ARENA_MAX")
    } | env
    done = subprocess.run(
        [sys.executable, "-c", probe, mode],
        capture_output=True,
        text=True,
        env=environ,
        timeout=120,
        check=True,
    )
    return int(done.stdout.strip().splitlines()[-1])


@glibc_only
def test_a_freed_large_block_is_given_back_once_the_threshold_is_fixed() -> None:
    """By default glibc keeps the freed 19 MiB block in its heap; tuned, it is unmapped."""
    held_default = _run(_PROBE, "plain")
    if held_default < 15 * 1024:
        pytest.skip(f"this glibc gave the block back by itself ({held_default} KiB held)")
    assert _run(_PROBE, "tune") < 2 * 1024


@glibc_only
def test_create_app_tunes_malloc_before_its_first_password_hash() -> None:
    """Building the service (which hashes its dummy password) leaves the threshold fixed."""
    assert _run(_PROBE, "app", NOTES_JWT_SECRET="x" * 48) < 2 * 1024


@glibc_only
def test_threads_share_the_limited_arenas() -> None:
    """Eight allocating threads get an arena each by default, and share two when tuned."""
    default = _run(_ARENAS, "plain")
    if default < 4:
        pytest.skip(f"this glibc made {default} thread arenas for 8 threads by itself")
    assert _run(_ARENAS, "tune") <= ARENA_MAX - 1


@glibc_only
def test_the_operators_malloc_settings_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """With glibc's variables in the environment, their values stand."""
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "1048576")
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert tune_malloc() == []


def test_the_sqlite_page_cache_is_bounded_per_connection_unless_the_url_says() -> None:
    """On SQLite the service asks each pooled connection for a 1 MiB page cache; a URL that
    sets cache_size keeps its own; server databases get no such option."""
    assert database_options(DatabaseURL("sqlite:///notes.db")) == {
        "foreign_keys": True,
        "cache_size": -SQLITE_CACHE_KIB,
    }
    assert "cache_size" not in database_options(DatabaseURL("sqlite:///n.db?cache_size=-4096"))
    assert database_options(DatabaseURL("postgresql://db/notes")) == {}


async def test_the_service_database_runs_with_the_bounded_cache(app: FastAPI) -> None:
    """The connected service's SQLite connections report the cache size it asked for."""
    database = app.state.database
    if database.url.dialect != "sqlite":
        pytest.skip("SQLite only")
    assert await database.fetch_val("PRAGMA cache_size") == -SQLITE_CACHE_KIB


# Holds 5,000 live lists (as requests in flight hold their objects), frees them, three times,
# and prints how many collections of the youngest generation that took.
_YOUNG = textwrap.dedent(
    """
    import gc, sys
    from notes.memory import collector_tuned

    young = []
    gc.callbacks.append(
        lambda phase, info: young.append(1) if phase == "start" and info["generation"] == 0
        else None
    )

    def load():
        for _ in range(3):
            held = [[] for _ in range(5000)]
            del held

    if sys.argv[1] == "tune":
        with collector_tuned():
            young.clear()
            load()
            print(len(young))
    else:
        young.clear()
        load()
        print(len(young))
    """
)


def test_the_youngest_generation_waits_for_more_objects_when_tuned() -> None:
    """5,000 objects alive at once cost CPython's default collector several young passes;
    tuned, none."""
    if gc.get_threshold()[0] >= GC_THRESHOLD:
        pytest.skip(f"this interpreter's threshold is already {gc.get_threshold()[0]}")
    assert _run(_YOUNG, "plain") >= 3
    assert _run(_YOUNG, "tune") == 0


def test_collector_tuned_freezes_and_restores() -> None:
    """In the block the objects that existed are frozen and the threshold raised; after it,
    nothing stays frozen and the threshold is what it was."""
    before = gc.get_threshold()
    if before[0] >= GC_THRESHOLD or not gc.isenabled():
        pytest.skip(f"this interpreter's collector is already tuned: {before}")
    kept: list[object] = [[], "made before"]  # a list is always tracked by the collector
    with collector_tuned() as tuned:
        assert tuned
        assert gc.get_threshold() == (GC_THRESHOLD, *before[1:])
        assert gc.get_freeze_count() > 0
        assert not any(o is kept for o in gc.get_objects())  # frozen: out of every generation
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
    assert any(o is kept for o in gc.get_objects())


def test_a_collector_set_by_someone_else_is_left_alone() -> None:
    """Switched off, or with a higher threshold already: nothing is frozen or changed."""
    before = gc.get_threshold()
    gc.disable()
    try:
        with collector_tuned() as tuned:
            assert not tuned
            assert gc.get_freeze_count() == 0
            assert gc.get_threshold() == before
    finally:
        gc.enable()
    gc.set_threshold(GC_THRESHOLD * 2, *before[1:])
    try:
        with collector_tuned() as tuned:
            assert not tuned
            assert gc.get_threshold() == (GC_THRESHOLD * 2, *before[1:])
    finally:
        gc.set_threshold(*before)


async def test_the_running_service_tunes_the_collector_unless_told_not_to(
    settings: Settings,
) -> None:
    """While the app's lifespan runs the collector is tuned; at its end it is restored.
    With tune_gc off it is never touched."""
    before = gc.get_threshold()
    if before[0] >= GC_THRESHOLD or not gc.isenabled():
        pytest.skip(f"this interpreter's collector is already tuned: {before}")
    app = create_app(settings.model_copy(update={"tune_gc": True}))
    async with app.router.lifespan_context(app):
        assert gc.get_threshold()[0] == GC_THRESHOLD
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
    app = create_app(settings.model_copy(update={"tune_gc": False}))
    async with app.router.lifespan_context(app):
        assert gc.get_threshold() == before
        assert gc.get_freeze_count() == 0


def test_tune_gc_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """On by default; NOTES_TUNE_GC=false switches it off."""
    secret = SecretStr("x" * 48)
    monkeypatch.delenv("NOTES_TUNE_GC", raising=False)
    assert Settings(jwt_secret=secret).tune_gc
    monkeypatch.setenv("NOTES_TUNE_GC", "false")
    assert not Settings(jwt_secret=secret).tune_gc
