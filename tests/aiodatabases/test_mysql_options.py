"""MySQL/MariaDB connection options as URL query options: pool bounds, recycling, TLS, socket.

They run on the private MariaDB server (``mariadb_server.py``), which offers TLS with a
certificate of its own CA and a Unix socket at a known path; the shared server does neither.
These run only when AIODATABASES_TEST_URLS names a mysql:// server (as in CI).
"""

from __future__ import annotations

import asyncio
import ssl

import pytest

import aiodatabases
from aiodatabases import Database

from ..conftest import env_urls, running_in_ci
from .mariadb_server import MariaDBServer

_MYSQL_URLS = [url for url in env_urls() if url.split(":", 1)[0].split("+")[0] == "mysql"]

pytestmark = pytest.mark.skipif(not _MYSQL_URLS, reason="no mysql:// URL in AIODATABASES_TEST_URLS")


@pytest.fixture
def tls_server(private_mariadb_server: MariaDBServer) -> MariaDBServer:
    """The private server, which must offer TLS (it does when openssl is installed)."""
    if private_mariadb_server.ssl_ca is None:
        message = "openssl is not installed: the private server has no TLS certificate"
        if running_in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return private_mariadb_server


async def _cipher(database: Database) -> str:
    row = await database.fetch_one("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
    assert row is not None
    return str(row[1])


@pytest.mark.timeout(30)
async def test_pool_bounds_and_recycle_are_read_from_the_url(
    private_mariadb_server: MariaDBServer,
) -> None:
    """?min_size=3&max_size=5&pool_recycle=0.5: 3 connections at connect, never more than 5
    under 20 concurrent queries, and each replaced once older than half a second."""
    url = private_mariadb_server.url(min_size="3", max_size="5", pool_recycle="0.5")
    async with Database(url) as db:
        assert db.pool_stats().size == 3
        threads = await asyncio.gather(
            *(
                db.fetch_val("SELECT CONNECTION_ID() FROM (SELECT SLEEP(0.05)) AS s")
                for _ in range(20)
            )
        )
        assert len(set(threads)) == 5
        assert db.pool_stats().size == 5
        await asyncio.sleep(0.6)
        later = await asyncio.gather(
            *(
                db.fetch_val("SELECT CONNECTION_ID() FROM (SELECT SLEEP(0.05)) AS s")
                for _ in range(20)
            )
        )
        assert set(later).isdisjoint(threads)
        assert db.pool_stats().size <= 5


@pytest.mark.timeout(30)
async def test_ssl_require_in_the_url_encrypts_and_the_default_does_not(
    tls_server: MariaDBServer,
) -> None:
    """?ssl=require gives a TLS session (without checking the certificate); no ssl option
    gives plain TCP."""
    async with Database(tls_server.url(ssl="require")) as encrypted:
        assert await _cipher(encrypted) != ""
    async with Database(tls_server.url()) as plain:
        assert await _cipher(plain) == ""


@pytest.mark.timeout(30)
@pytest.mark.parametrize("mode", ["true", "verify-full", "verify-ca"])
async def test_ssl_verification_refuses_a_certificate_of_an_unknown_ca(
    tls_server: MariaDBServer, mode: str
) -> None:
    """?ssl=true (or a verify mode) checks the certificate against the system's CAs: a
    server whose CA is not among them is refused with an OperationalError."""
    db = Database(tls_server.url(ssl=mode), min_size=0, connect_timeout=5)
    with pytest.raises(aiodatabases.OperationalError, match=r"(?i)certificate"):
        async with db:
            await db.fetch_val("SELECT 1")


@pytest.mark.timeout(30)
async def test_ssl_context_trusting_the_servers_ca_verifies_and_encrypts(
    tls_server: MariaDBServer,
) -> None:
    """An ssl.SSLContext passed as ssl= that trusts the server's CA connects over TLS,
    host name checked."""
    context = ssl.create_default_context(cafile=str(tls_server.ssl_ca))
    assert context.check_hostname
    async with Database(tls_server.url(), ssl=context) as db:
        assert await _cipher(db) != ""


@pytest.mark.timeout(30)
async def test_unix_socket_in_the_url_connects_through_the_socket(
    private_mariadb_server: MariaDBServer,
) -> None:
    """?unix_socket=/path connects through the Unix socket, not TCP."""
    url = f"mysql://root@localhost/?unix_socket={private_mariadb_server.socket}"
    async with Database(url) as db, db.connection() as connection:
        assert connection.raw_connection.get_host_info() == "Localhost via UNIX socket"
        assert await connection.fetch_val("SELECT 1") == 1
