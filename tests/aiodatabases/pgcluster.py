"""A private PostgreSQL cluster for fault tests: its own data directory, port and server.

Fault tests stop, restart and kill the server; they must never do that to the shared server
other suites use. ``PgCluster`` runs ``initdb`` and ``pg_ctl`` from the PostgreSQL install
(``AIODATABASES_PG_BINDIR``, else the newest ``/usr/lib/postgresql/*/bin``, else ``PATH``).
PostgreSQL refuses to run as root, so as root the commands run as the ``postgres`` user
through ``runuser``. The server trusts local connections and listens on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ..conftest import running_in_ci

__all__ = ["PgCluster", "private_cluster"]

_START_TIMEOUT = 30


def _bindir() -> Path | None:
    configured = os.environ.get("AIODATABASES_PG_BINDIR")
    if configured:
        return Path(configured)
    installed = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: int(Path(path).parts[-3]) if Path(path).parts[-3].isdigit() else 0,
    )
    if installed:
        return Path(installed[-1]).parent
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class PgCluster:
    """One PostgreSQL server in a temporary directory; used by one test module at a time."""

    def __init__(self, bindir: Path, root: Path, port: int) -> None:
        self.bindir = bindir
        self.root = root
        self.data = root / "data"
        self.log = root / "server.log"
        self.port = port
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        self._prefix: list[str] = []
        if os.geteuid() == 0:
            self._prefix = ["runuser", "-u", "postgres", "--"]

    def _command(self, tool: str, *args: str) -> list[str]:
        return [*self._prefix, str(self.bindir / tool), *args]

    def _run(self, tool: str, *args: str) -> None:
        result = subprocess.run(
            self._command(tool, *args),
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=_START_TIMEOUT + 30,
            check=False,
        )
        if result.returncode:
            raise RuntimeError(
                f"{tool} failed ({result.returncode}): {result.stderr.strip()}\n{self.log_tail()}"
            )

    async def _arun(self, tool: str, *args: str) -> None:
        process = await asyncio.create_subprocess_exec(
            *self._command(tool, *args),
            cwd=self.root,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, stderr = await process.communicate()
        if process.returncode:
            raise RuntimeError(f"{tool} failed: {stderr.decode().strip()}\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the server log, for error messages."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def init(self) -> None:
        """Create the data directory: trust authentication, this port, 127.0.0.1 only."""
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        )
        settings = {
            "port": str(self.port),
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.root}'",
            # Durable against a killed server (commits reach the kernel), not against a
            # crashed machine, which no test simulates.
            "fsync": "off",
            "shared_buffers": "'32MB'",
            "max_connections": "100",
            "log_min_messages": "warning",
        }
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{name} = {value}\n" for name, value in settings.items())

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        self._run("pg_ctl", "start", "-D", str(self.data), "-l", str(self.log), "-w",
                  "-t", str(_START_TIMEOUT))  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: sessions are ended, ``immediate``: killed)."""
        self._run("pg_ctl", "stop", "-D", str(self.data), "-m", mode, "-w")

    async def stop_async(self, mode: str = "fast") -> None:
        """``stop()`` without blocking the event loop."""
        await self._arun("pg_ctl", "stop", "-D", str(self.data), "-m", mode, "-w")

    async def launch_async(self) -> None:
        """Start the server without waiting for it to accept connections."""
        await self._arun("pg_ctl", "start", "-D", str(self.data), "-l", str(self.log), "-W")

    def accepts(self) -> bool:
        """Whether the server's port takes TCP connections."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False


@contextmanager
def private_cluster() -> Iterator[PgCluster]:
    """Yield a started private cluster; stop it and delete its files afterwards.

    Without PostgreSQL's server binaries this skips, except in CI, where it fails: the fault
    tests must not vanish from a CI run unnoticed. A server that cannot start fails.
    """
    bindir = _bindir()
    if bindir is None or not (bindir / "initdb").exists():
        message = "PostgreSQL server binaries (initdb) not found; set AIODATABASES_PG_BINDIR"
        if running_in_ci():
            pytest.fail(message)
        pytest.skip(message)
    root = Path(tempfile.mkdtemp(prefix="aiodatabases-pg-"))
    try:
        cluster = PgCluster(bindir, root, _free_port())
        try:
            if os.geteuid() == 0:
                owner = pwd.getpwnam("postgres")
                os.chown(root, owner.pw_uid, owner.pw_gid)
            cluster.init()
            cluster.start()
        except (OSError, RuntimeError, KeyError, subprocess.TimeoutExpired) as exc:
            pytest.fail(f"could not start a private PostgreSQL cluster: {exc}")
        try:
            yield cluster
        finally:
            try:
                cluster.stop("immediate")
            except RuntimeError:
                pass  # already stopped
            deadline = time.monotonic() + 10
            while cluster.accepts() and time.monotonic() < deadline:
                time.sleep(0.05)
    finally:
        shutil.rmtree(root, ignore_errors=True)
