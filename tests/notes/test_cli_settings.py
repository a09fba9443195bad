"""The notes command line (db upgrade/downgrade/current, serve) and the settings."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from notes import Settings, migrate
from notes.cli import main


def test_settings_default_to_a_sqlite_file_in_the_working_directory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With no environment, the database is sqlite:///notes.db and counts as embedded."""
    monkeypatch.delenv("NOTES_DATABASE_URL", raising=False)
    settings = Settings()
    assert settings.database_url.get_secret_value() == "sqlite:///notes.db"
    assert settings.is_embedded


def test_settings_read_notes_prefixed_variables_and_hide_the_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """NOTES_DATABASE_URL is read, kept secret in repr, and a server URL is not embedded."""
    monkeypatch.setenv("NOTES_DATABASE_URL", "postgresql://app:hunter2@db/notes")
    monkeypatch.setenv("NOTES_MAX_BODY_SIZE", "2048")
    settings = Settings()
    assert settings.database_url.get_secret_value() == "postgresql://app:hunter2@db/notes"
    assert settings.max_body_size == 2048
    assert "hunter2" not in repr(settings)
    assert not settings.is_embedded


def test_db_commands_upgrade_report_and_downgrade(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """notes db upgrade, current and downgrade base act on the database and print where it is."""
    url = f"sqlite:///{tmp_path}/cli.db"
    monkeypatch.setenv("NOTES_DATABASE_URL", url)
    assert main(["db", "current"]) == 0
    assert capsys.readouterr().out.strip() == "base (no migration applied)"
    assert main(["db", "upgrade"]) == 0
    assert capsys.readouterr().out.strip() == migrate.head()
    assert migrate.current(url) == (migrate.head(),)
    assert main(["db", "downgrade", "base"]) == 0
    assert capsys.readouterr().out.strip() == "base (no migration applied)"


def test_database_url_option_wins_over_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--database-url points the command at another database than NOTES_DATABASE_URL."""
    monkeypatch.setenv("NOTES_DATABASE_URL", f"sqlite:///{tmp_path}/env.db")
    chosen = f"sqlite:///{tmp_path}/option.db"
    assert main(["--database-url", chosen, "db", "upgrade"]) == 0
    assert migrate.current(chosen) == (migrate.head(),)
    assert not (tmp_path / "env.db").exists()
    capsys.readouterr()


def test_db_command_on_a_bad_url_fails_with_a_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unsupported URL exits 1 with one line on stderr, no traceback."""
    monkeypatch.setenv("NOTES_DATABASE_URL", "oracle://x@y/z")
    assert main(["db", "current"]) == 1
    error = capsys.readouterr().err
    assert error.startswith("notes: ValueError: cannot migrate oracle://")
    assert "Traceback" not in error


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """notes frobnicate exits 2 with argparse's usage message."""
    with pytest.raises(SystemExit) as exit_info:
        main(["frobnicate"])
    assert exit_info.value.code == 2
    assert "usage: notes" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.timeout(60)
def test_serve_migrates_the_embedded_database_and_answers_http(tmp_path: Path) -> None:
    """notes serve in an empty directory creates notes.db at head, its secret, and serves."""
    port = _free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("NOTES_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "notes", "serve", "--port", str(port), "--log-level", "warning"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                ready = httpx.get(f"{base}/health/ready", timeout=2)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert ready.status_code == 200
        account = {"email": "ada@example.org", "password": "a long password"}
        registered = httpx.post(f"{base}/api/auth/register", json=account, timeout=5)
        assert registered.status_code == 201
        login = {"username": account["email"], "password": account["password"]}
        tokens = httpx.post(f"{base}/api/auth/token", data=login, timeout=5).json()
        bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
        created = httpx.post(
            f"{base}/api/notes", json={"title": "served"}, headers=bearer, timeout=5
        )
        assert created.status_code == 201
        assert httpx.post(f"{base}/api/notes", json={"title": "x"}, timeout=5).status_code == 401
        assert httpx.get(f"{base}/docs", timeout=5).status_code == 200
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=20)
    assert b"/docs" in output
    assert migrate.current(f"sqlite:///{tmp_path}/notes.db") == (migrate.head(),)
    secret = tmp_path / "notes.db.secret"
    assert secret.stat().st_mode & 0o777 == 0o600
    assert secret.read_text().strip().encode() not in output


def test_settings_accept_a_secret_url() -> None:
    """Settings take the URL as a SecretStr and give it back unchanged."""
    settings = Settings(database_url=SecretStr("sqlite:///x.db"))
    assert settings.database_url.get_secret_value() == "sqlite:///x.db"
