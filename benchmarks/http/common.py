"""Standard-library helpers shared by the HTTP benchmark and the held load.

Starting a uvicorn server in its own process and waiting for it, reading its memory, talking
to the notes service for setup (users, tokens, seed notes) and creating PostgreSQL databases.
Nothing here is timed: the load itself comes from wrk (``run.py``) or from httpx
(``held_load.py``).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
APPS = HERE / "apps"

#: The user every benchmark client logs in as (one per held-load client: ``load-<n>@...``).
PASSWORD = "held-load-password-1"

#: Words the seeded notes are made of; the search scenarios look for them.
VOCABULARY = [
    "apple",
    "banana",
    "cherry",
    "delta",
    "echo",
    "falcon",
    "garden",
    "harbor",
    "island",
    "jungle",
    "kettle",
    "lemon",
    "meadow",
    "nectar",
    "orbit",
    "pepper",
    "quartz",
    "river",
    "saddle",
    "timber",
    "umbrella",
    "valley",
    "walnut",
    "xenon",
    "yonder",
    "zephyr",
    "amber",
    "breeze",
    "canyon",
    "dune",
    "ember",
    "fjord",
    "glacier",
    "horizon",
    "ivory",
    "jasper",
    "kelp",
    "lantern",
    "marble",
    "nebula",
    "oasis",
    "prairie",
    "quiver",
    "reef",
    "summit",
    "tundra",
    "urchin",
    "violet",
    "willow",
    "yarrow",
    "zenith",
]


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_kib(pid: int) -> int | None:
    """Return the resident memory of process ``pid`` in KiB (Linux), None if unknown."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


@dataclass
class Server:
    """A uvicorn server process on 127.0.0.1; stop it with :meth:`stop`."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    started: float = field(default_factory=time.monotonic)

    @property
    def base(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:8123``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """The process id of the server (one worker: the process that serves)."""
        return self.process.pid

    def log_tail(self, lines: int = 30) -> str:
        """Return the last lines the server wrote."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 20.0) -> int | None:
        """Stop the server (SIGINT, then SIGKILL) and return its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode


class ServerError(RuntimeError):
    """A server did not start, or died."""


def start_server(
    python: str | Path,
    app: str,
    *,
    env: Mapping[str, str],
    log_path: Path,
    factory: bool = False,
    app_dir: Path | None = None,
    ready_path: str = "/",
    timeout: float = 60.0,
) -> Server:
    """Start ``uvicorn <app>`` (one worker, no reload, no access log) and wait until it answers.

    The server is ready when ``GET ready_path`` gets any HTTP answer below 500.

    Raises:
        ServerError: It exited, or did not answer within ``timeout`` seconds.
    """
    port = free_port()
    cmd = [
        str(python),
        "-m",
        "uvicorn",
        app,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--no-access-log",
        "--log-level",
        "warning",
        "--loop",
        "asyncio",
    ]
    if factory:
        cmd.append("--factory")
    if app_dir is not None:
        cmd += ["--app-dir", str(app_dir)]
    full_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    full_env.update(env)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=full_env, cwd=str(log_path.parent)
        )
    server = Server(process, port, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerError(f"{app} exited with {process.returncode}:\n{server.log_tail()}")
        try:
            status, _ = request_json("GET", server.base + ready_path, timeout=2)
        except OSError:
            time.sleep(0.1)
            continue
        if status < 500:
            return server
        time.sleep(0.1)
    server.stop()
    raise ServerError(f"{app} did not answer within {timeout:.0f}s:\n{server.log_tail()}")


def request_json(
    method: str,
    url: str,
    *,
    body: Any = None,
    form: Mapping[str, str] | None = None,
    token: str | None = None,
    timeout: float = 30.0,
) -> tuple[int, Any]:
    """Send one request with urllib and return ``(status, decoded JSON or None)``."""
    headers = {"Accept": "application/json"}
    data = None
    if form is not None:
        data = urllib.parse.urlencode(form).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    elif body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            raw = response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        status = exc.code
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, None


# -- the notes service ------------------------------------------------------------------------


def notes_env(database_url: str, *, token_seconds: int = 3600) -> dict[str, str]:
    """The environment of a notes service on ``database_url`` with a fresh signing secret."""
    return {
        "NOTES_DATABASE_URL": database_url,
        "NOTES_JWT_SECRET": secrets.token_urlsafe(48),
        "NOTES_ACCESS_TOKEN_SECONDS": str(token_seconds),
        "NOTES_LOG_LEVEL": "warning",
    }


def source_env(source: Path | None) -> dict[str, str]:
    """Environment that makes a server run the code of ``source`` (a checkout) if given.

    ``PYTHONPATH=<source>/src`` comes before the editable install of the working tree, so a
    run can measure a fixed commit (a ``git worktree``) while the working tree changes. A
    fresh worktree has no compiled C speedups, and aiodatabases would quietly run its pure
    Python fallbacks from it: they are built into it first (``ensure_speedups``).
    """
    if source is None:
        return {}
    ensure_speedups(source.resolve())
    return {"PYTHONPATH": str(source.resolve() / "src")}


def ensure_speedups(source: Path) -> None:
    """Build aiodatabases' C extensions into ``source``'s ``src/`` unless they are there.

    Every ``_c*.c`` module of the package (the records, the SQLite reader) is built: a
    worktree missing one would quietly run that part's pure-Python fallback. Built as a wheel
    with pip (in an isolated build environment, as an install would) and the extensions taken
    out of it, for the interpreter running this.

    Raises:
        ServerError: An extension could not be built.
    """
    package = source / "src" / "aiodatabases"
    wanted = {c.stem for c in package.glob("_c*.c")}
    missing = {m for m in wanted if not any(package.glob(f"{m}.*.so"))}
    if not missing:
        return
    log(f"building the C speedups of {source} ({', '.join(sorted(missing))}) ...")
    with tempfile.TemporaryDirectory() as tmp:
        built = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", tmp, str(source)],
            capture_output=True,
            text=True,
            timeout=600,
        )
        wheels = list(Path(tmp).glob("*.whl"))
        if built.returncode != 0 or not wheels:
            raise ServerError(f"building {source} failed:\n{built.stdout}{built.stderr}")
        with zipfile.ZipFile(wheels[0]) as wheel:
            for module in sorted(missing):
                names = [
                    n
                    for n in wheel.namelist()
                    if n.startswith(f"aiodatabases/{module}.") and n.endswith(".so")
                ]
                if not names:
                    raise ServerError(f"the wheel of {source} holds no compiled {module}")
                (package / Path(names[0]).name).write_bytes(wheel.read(names[0]))


def migrate_notes(
    python: str | Path, database_url: str, log_path: Path, *, env: Mapping[str, str] | None = None
) -> None:
    """Apply the notes migrations to ``database_url`` (``python -m notes db upgrade``).

    Raises:
        ServerError: The migration failed.
    """
    full_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    full_env.update(env or {})
    proc = subprocess.run(
        [str(python), "-m", "notes", "--database-url", database_url, "db", "upgrade"],
        capture_output=True,
        text=True,
        timeout=300,
        env=full_env,
        cwd=str(log_path.parent),
    )
    log_path.write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise ServerError(f"notes db upgrade failed:\n{proc.stdout}{proc.stderr}")


def has_auth(base: str) -> bool:
    """True when the service has the login routes (``POST /api/auth/token``)."""
    status, schema = request_json("GET", base + "/openapi.json")
    if status == 200 and isinstance(schema, dict):
        return "/api/auth/token" in schema.get("paths", {})
    status, _ = request_json("POST", base + "/api/auth/token", form={})
    return status != 404


def issue_token(base: str, email: str, password: str = PASSWORD) -> str:
    """Register ``email`` (if new) and log in; return the bearer access token.

    Raises:
        ServerError: Registration or login was refused.
    """
    status, answer = request_json(
        "POST", base + "/api/auth/register", body={"email": email, "password": password}
    )
    if status not in (200, 201, 409):
        raise ServerError(f"register {email}: {status} {answer}")
    status, answer = request_json(
        "POST",
        base + "/api/auth/token",
        form={"grant_type": "password", "username": email, "password": password},
    )
    if status != 200 or not isinstance(answer, dict) or "access_token" not in answer:
        raise ServerError(f"token for {email}: {status} {answer}")
    return str(answer["access_token"])


def note_text(rng: Any, words: int) -> str:
    """A line of ``words`` random vocabulary words."""
    return " ".join(rng.choice(VOCABULARY) for _ in range(words))


def seed_notes(base: str, token: str | None, count: int, rng: Any) -> list[int]:
    """Create ``count`` notes through ``POST /api/notes/batch``; return their ids.

    Raises:
        ServerError: A batch was refused.
    """
    ids: list[int] = []
    while len(ids) < count:
        size = min(100, count - len(ids))
        batch = [
            {
                "title": note_text(rng, 3),
                "body": note_text(rng, 20),
                "tags": [rng.choice(VOCABULARY)],
            }
            for _ in range(size)
        ]
        status, answer = request_json(
            "POST", base + "/api/notes/batch", body={"notes": batch}, token=token
        )
        if status != 201 or not isinstance(answer, list):
            raise ServerError(f"batch of {size} notes: {status} {answer}")
        ids += [int(note["id"]) for note in answer]
    return ids


# -- PostgreSQL --------------------------------------------------------------------------------


def pg_recreate_database(admin_url: str, name: str) -> str:
    """Drop (forcing out sessions) and create database ``name``; return its URL.

    ``admin_url`` is a URL of any database on the server (``postgresql://postgres@host/db``).

    Raises:
        subprocess.CalledProcessError: psql failed.
    """
    for sql in (f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"'):
        subprocess.run(
            ["psql", admin_url, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql],
            check=True,
            capture_output=True,
            timeout=120,
        )
    parts = urllib.parse.urlsplit(admin_url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, "/" + name, "", ""))


def analyze(database_url: str) -> None:
    """Refresh the planner statistics of a seeded database, as autovacuum would in service.

    The minimal contenders' table is analyzed by seed.py; the service's tables get the same.
    PostgreSQL plans with them at once; SQLite connections read them when they open.

    Raises:
        subprocess.CalledProcessError: psql failed.
    """
    if database_url.startswith("postgresql://"):
        subprocess.run(
            ["psql", database_url, "-v", "ON_ERROR_STOP=1", "-q", "-c", "ANALYZE"],
            check=True,
            capture_output=True,
            timeout=300,
        )
    else:
        connection = sqlite3.connect(database_url.removeprefix("sqlite:///"))
        try:
            connection.execute("ANALYZE")
        finally:
            connection.close()


def pg_query(url: str, sql: str) -> list[list[str]]:
    """Run ``sql`` with psql and return the rows as lists of text fields."""
    proc = subprocess.run(
        ["psql", url, "-v", "ON_ERROR_STOP=1", "-At", "-F", "\t", "-c", sql],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return [line.split("\t") for line in proc.stdout.splitlines() if line]


def log(message: str) -> None:
    """Print a progress line to stderr."""
    print(message, file=sys.stderr, flush=True)


def python_of_env(env_dir: Path) -> Path:
    """The interpreter of a virtual environment."""
    return env_dir / "bin" / "python"


__all__: Sequence[str] = [
    "APPS",
    "PASSWORD",
    "REPO",
    "VOCABULARY",
    "Server",
    "ServerError",
    "analyze",
    "free_port",
    "has_auth",
    "issue_token",
    "log",
    "migrate_notes",
    "note_text",
    "notes_env",
    "pg_query",
    "pg_recreate_database",
    "request_json",
    "rss_kib",
    "seed_notes",
    "source_env",
    "start_server",
]
