"""A private MariaDB server for destructive tests: started, killed and restarted at will.

The shared server on port 3306 is used by every suite on the machine, so tests that kill its
connections wholesale, change its global variables or restart it run against a server of
their own instead: ``mariadb-install-db`` into a temporary data directory, then ``mariadbd``
on a free port of 127.0.0.1 with its socket in the same directory.

On a laptop without MariaDB the tests that need it are skipped; with ``CI`` set a server that
cannot be started fails them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..conftest import running_in_ci

__all__ = ["MariaDBServer", "private_mariadb_server"]

_INSTALL_DB = "mariadb-install-db"
_SERVER_CANDIDATES = ("/usr/sbin/mariadbd", "/usr/sbin/mysqld")
#: Seconds a start or stop may take before the server is declared broken.
_START_TIMEOUT = 30.0
_STOP_TIMEOUT = 30.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _server_binary() -> str | None:
    found = shutil.which("mariadbd")
    if found:
        return found
    for candidate in _SERVER_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    return None


class ServerUnavailable(RuntimeError):
    """The private server could not be installed or started."""


class MariaDBServer:
    """One private ``mariadbd`` process over a data directory of its own.

    Not safe to share between threads; tests call ``restart()`` through
    ``asyncio.to_thread`` so the event loop keeps running meanwhile.
    """

    def __init__(self, base: Path) -> None:
        self.base = base
        self.datadir = base / "data"
        self.socket = base / "sock"
        self.log = base / "server.log"
        self.port = _free_port()
        self._process: subprocess.Popen[bytes] | None = None
        self._binary = _server_binary()
        #: The CA that signed the server's TLS certificate, when TLS is on.
        self.ssl_ca: Path | None = None

    # -- URLs -----------------------------------------------------------------------------------

    def url(self, database: str = "", **options: str) -> str:
        """Return a ``mysql://`` URL of this server (root, no password)."""
        query = "&".join(f"{key}={value}" for key, value in options.items())
        return f"mysql://root@127.0.0.1:{self.port}/{database}" + (f"?{query}" if query else "")

    # -- lifecycle ------------------------------------------------------------------------------

    def install(self) -> None:
        """Create the system tables in a fresh data directory.

        Raises:
            ServerUnavailable: MariaDB is not installed or the installation failed.
        """
        if self._binary is None or shutil.which(_INSTALL_DB) is None:
            raise ServerUnavailable("mariadbd or mariadb-install-db is not installed")
        self.datadir.mkdir(parents=True)
        done = subprocess.run(
            [
                _INSTALL_DB,
                "--no-defaults",
                f"--datadir={self.datadir}",
                "--user=root",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
            capture_output=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise ServerUnavailable(
                f"mariadb-install-db failed ({done.returncode}): "
                f"{done.stderr.decode(errors='replace')[-2000:]}"
            )
        self._make_certificates()

    def _make_certificates(self) -> None:
        """Make a CA and a server certificate for 127.0.0.1, so the server offers TLS.

        Without openssl the server runs without TLS and ``ssl_ca`` stays ``None``.
        """
        if shutil.which("openssl") is None:
            return
        tls = self.base / "tls"
        tls.mkdir()
        (tls / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        days = ["-days", "2"]
        commands = [
            ["req", "-x509", "-newkey", "rsa:2048", "-nodes", *days, "-keyout", "ca-key.pem",
             "-out", "ca.pem", "-subj", "/CN=aiodatabases test CA"],
            ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server-key.pem",
             "-out", "server.csr", "-subj", "/CN=127.0.0.1"],
            ["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem",
             "-CAcreateserial", *days, "-out", "server-cert.pem", "-extfile", "san.cnf"],
        ]  # fmt: skip
        for command in commands:
            done = subprocess.run(
                ["openssl", *command], cwd=tls, capture_output=True, timeout=60, check=False
            )
            if done.returncode != 0:
                raise ServerUnavailable(
                    f"openssl {command[0]} failed: {done.stderr.decode(errors='replace')}"
                )
        self.ssl_ca = tls / "ca.pem"

    def start(self) -> float:
        """Start the server and wait until it accepts connections; return that moment.

        The moment is ``time.monotonic()`` when the first TCP connection got the server's
        greeting.

        Raises:
            ServerUnavailable: The server exited or did not answer in time.
        """
        if self._process is not None and self._process.poll() is None:
            raise RuntimeError("start(): the server is already running")
        if self._binary is None:
            raise ServerUnavailable("mariadbd is not installed")
        with self.log.open("ab") as log:
            self._process = subprocess.Popen(
                [
                    self._binary,
                    "--no-defaults",
                    f"--datadir={self.datadir}",
                    f"--port={self.port}",
                    "--bind-address=127.0.0.1",
                    f"--socket={self.socket}",
                    f"--pid-file={self.base / 'server.pid'}",
                    "--user=root",
                    "--skip-name-resolve",
                    "--innodb-buffer-pool-size=64M",
                    "--innodb-log-file-size=16M",
                    "--max-connections=400",
                    "--skip-log-bin",
                    *self._tls_options(),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise ServerUnavailable(
                    f"mariadbd exited with {self._process.returncode}:\n{self.log_tail()}"
                )
            if self._greets():
                return time.monotonic()
            time.sleep(0.01)
        self.kill()
        raise ServerUnavailable(f"mariadbd did not accept connections in time:\n{self.log_tail()}")

    def _tls_options(self) -> list[str]:
        if self.ssl_ca is None:
            return []
        tls = self.ssl_ca.parent
        return [
            f"--ssl-ca={tls / 'ca.pem'}",
            f"--ssl-cert={tls / 'server-cert.pem'}",
            f"--ssl-key={tls / 'server-key.pem'}",
        ]

    def _greets(self) -> bool:
        """Whether a TCP connection to the server receives its handshake packet."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                return len(sock.recv(4)) == 4
        except OSError:
            return False

    def stop(self) -> None:
        """Shut the server down cleanly (SIGTERM) and wait for it to exit."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self) -> None:
        """End the server at once (SIGKILL), as a crash would."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """Suspend the server (SIGSTOP) for the block: it accepts TCP but answers nothing."""
        process = self._process
        if process is None or process.poll() is not None:
            raise RuntimeError("frozen(): the server is not running")
        process.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            process.send_signal(signal.SIGCONT)

    def restart(self) -> tuple[float, float]:
        """Stop the server cleanly and start it again; return (stopped, accepting) moments."""
        self.stop()
        stopped = time.monotonic()
        return stopped, self.start()

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the server's log, for failure messages."""
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"


@pytest.fixture(scope="session")
def private_mariadb_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDBServer]:
    """A private MariaDB server for the test session: skipped locally when unavailable, a
    failure in CI."""
    server = MariaDBServer(tmp_path_factory.mktemp("mariadb"))
    try:
        server.install()
        server.start()
    except (ServerUnavailable, OSError, subprocess.SubprocessError) as exc:
        server.kill()
        message = f"cannot start a private MariaDB server: {exc}"
        if running_in_ci():
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.datadir, ignore_errors=True)
