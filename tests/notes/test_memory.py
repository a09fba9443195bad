"""The service fixes glibc's mmap threshold, so freed large buffers go back to the system."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap

import pytest

from notes.memory import pin_mmap_threshold

pytestmark = pytest.mark.skipif(
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

    if sys.argv[1] == "pin":
        from notes.memory import pin_mmap_threshold
        assert pin_mmap_threshold()
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


def _held_kib(mode: str, **env: str) -> int:
    """KiB of the second 19 MiB block still resident after it was freed."""
    environ = {k: v for k, v in os.environ.items() if k != "MALLOC_MMAP_THRESHOLD_"} | env
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, mode],
        capture_output=True,
        text=True,
        env=environ,
        timeout=120,
        check=True,
    )
    return int(done.stdout.strip().splitlines()[-1])


def test_a_freed_large_block_is_given_back_once_the_threshold_is_pinned() -> None:
    """Unpinned, glibc keeps the freed 19 MiB block in its heap; pinned, it is unmapped."""
    held_default = _held_kib("plain")
    if held_default < 15 * 1024:
        pytest.skip(f"this glibc gave the block back by itself ({held_default} KiB held)")
    assert _held_kib("pin") < 2 * 1024


def test_create_app_pins_the_threshold_before_its_first_password_hash() -> None:
    """Building the service (which hashes its dummy password) leaves the threshold pinned."""
    assert _held_kib("app", NOTES_JWT_SECRET="x" * 48) < 2 * 1024


def test_the_operators_malloc_setting_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """With MALLOC_MMAP_THRESHOLD_ in the environment, glibc's own value stands."""
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "1048576")
    assert pin_mmap_threshold() is False
