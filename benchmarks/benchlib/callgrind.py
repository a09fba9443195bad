"""Counting instructions with valgrind's callgrind (standard library only)."""

from __future__ import annotations

import os
import re
import subprocess
import sys


def instructions(
    script: str,
    args: list[str],
    env: dict[str, str] | None = None,
    *,
    python: str = sys.executable,
    cwd: str | None = None,
    timeout: float | None = None,
) -> int:
    """Run ``python script *args`` under callgrind; return the user-space instructions it ran.

    ``PYTHONHASHSEED`` is fixed, so that the count of a run does not depend on string hashes;
    ``env`` adds to (or overrides) the current environment. ``python`` is the interpreter
    (default: this one), ``cwd`` the directory it runs in, ``timeout`` the seconds it may take.
    """
    done = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            python,
            script,
            *args,
        ],
        env=dict(os.environ, PYTHONHASHSEED="0", **(env or {})),
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
    )
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(
            f"{script} {' '.join(args)} under callgrind failed ({done.returncode}):\n"
            f"{done.stderr[-3000:]}"
        )
    return int(found.group(1))
