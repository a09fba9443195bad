"""Counting instructions with valgrind's callgrind (standard library only)."""

from __future__ import annotations

import os
import re
import subprocess
import sys


def instructions(script: str, args: list[str], env: dict[str, str] | None = None) -> int:
    """Run ``python script *args`` under callgrind; return the user-space instructions it ran.

    ``PYTHONHASHSEED`` is fixed, so that the count of a run does not depend on string hashes;
    ``env`` adds to (or overrides) the current environment.
    """
    done = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            script,
            *args,
        ],
        env=dict(os.environ, PYTHONHASHSEED="0", **(env or {})),
        capture_output=True,
        text=True,
        check=True,
    )
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise SystemExit(f"no callgrind total in:\n{done.stderr[-2000:]}")
    return int(found.group(1))
