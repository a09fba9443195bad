"""A short held load on the real service over HTTP: no error, no lost note, no leaked connection.

It runs ``benchmarks/http/held_load.py`` (64 clients with pre-issued tokens, the 60/15/10/10/5
mix of get, list, search, create and update-or-delete) against a uvicorn server in its own
process, on SQLite and on each PostgreSQL server of ``AIODATABASES_TEST_URLS``. Latency and
memory are reported but not judged here: a CI machine is too noisy for that.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from ..conftest import env_urls, require_reachable

HELD_LOAD = Path(__file__).resolve().parents[2] / "benchmarks" / "http" / "held_load.py"

#: Seconds of load per backend: together about a minute.
DURATION = 30

_POSTGRESQL = [url for url in env_urls() if url.split(":", 1)[0].split("+")[0] == "postgresql"]


def _id(param: str) -> str:
    return "sqlite" if param == "sqlite" else f"postgresql@{urllib.parse.urlsplit(param).port}"


@pytest.mark.timeout(DURATION + 240)
@pytest.mark.parametrize("backend", ["sqlite", *_POSTGRESQL], ids=_id)
def test_held_load_of_64_clients_has_no_errors_no_lost_notes_and_no_leaked_connections(
    backend: str, tmp_path: Path
) -> None:
    """Every request of the mix gets its expected status, every acknowledged note is stored,
    and afterwards no pool connection is checked out and no session sits in a transaction."""
    command = [
        sys.executable,
        str(HELD_LOAD),
        "--duration",
        str(DURATION),
        "--clients",
        "64",
        "--memory-bar",
        "-1",
        "--workdir",
        str(tmp_path / "run"),
        "--json",
        str(tmp_path / "result.json"),
    ]
    database = f"notes_held_load_{os.getpid()}"
    if backend == "sqlite":
        command += ["--backend", "sqlite"]
    else:
        require_reachable(backend)
        command += ["--backend", "postgresql", "--pg-admin-url", backend]
        command += ["--pg-database", database]
    try:
        proc = subprocess.run(
            command, capture_output=True, text=True, timeout=DURATION + 220, check=False
        )
        result_path = tmp_path / "result.json"
        assert result_path.exists(), f"no result:\n{proc.stdout}\n{proc.stderr[-4000:]}"
        result: dict[str, Any] = json.loads(result_path.read_text())
    finally:
        if backend != "sqlite":
            subprocess.run(
                ["psql", backend, "-q", "-c", f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'],
                capture_output=True,
                timeout=60,
                check=False,
            )
    report = proc.stdout
    assert result["requests"] > 100, report
    assert result["errors"] == 0, report
    assert result["lost"] == 0, report
    assert result["deleted_but_present"] == 0, report
    assert result["leaks"] == [], report
    assert result["pool"]["in_use"] == 0, report
    assert result["server_exit_code"] == 0, report
    assert proc.returncode == 0, report + proc.stderr[-4000:]
