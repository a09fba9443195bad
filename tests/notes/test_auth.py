"""Accounts: register, log in, refresh with rotation, log out, me, password change, throttling."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from pydantic import SecretStr

import aiodatabases
from notes import Settings, create_app
from notes.tables import users

from .helpers import assert_problem

EMAIL = "ada@example.org"
PASSWORD = "a long enough password"


async def register(
    client: httpx.AsyncClient, email: str = EMAIL, password: str = PASSWORD
) -> dict[str, Any]:
    """Register an account through the API; return the user it answers."""
    response = await client.post("/api/auth/register", json={"email": email, "password": password})
    assert response.status_code == 201, response.text
    user: dict[str, Any] = response.json()
    return user


async def login(
    client: httpx.AsyncClient, email: str = EMAIL, password: str = PASSWORD
) -> httpx.Response:
    """Log in through the OAuth2 password flow (a form, the email as username)."""
    return await client.post("/api/auth/token", data={"username": email, "password": password})


async def tokens_of(
    client: httpx.AsyncClient, email: str = EMAIL, password: str = PASSWORD
) -> dict[str, Any]:
    """Log in and return the token pair."""
    response = await login(client, email, password)
    assert response.status_code == 200, response.text
    pair: dict[str, Any] = response.json()
    return pair


def bearer(pair: dict[str, Any]) -> dict[str, str]:
    """The Authorization header of a token pair's access token."""
    return {"Authorization": f"Bearer {pair['access_token']}"}


async def stored_hash(database: aiodatabases.Database, email: str = EMAIL) -> str:
    """The password hash stored for an account."""
    value: str = await database.fetch_val(
        sa.select(users.c.password_hash).where(users.c.email == email)
    )
    return value


async def test_register_then_log_in_and_read_me(anonymous: httpx.AsyncClient) -> None:
    """A registered account logs in with a form and /api/users/me answers who it is."""
    user = await register(anonymous, email="Ada@Example.ORG")
    assert user["email"] == EMAIL
    assert set(user) == {"id", "email", "created_at"}
    pair = await tokens_of(anonymous)
    assert pair["token_type"] == "bearer"
    assert pair["expires_in"] == 900
    me = await anonymous.get("/api/users/me", headers=bearer(pair))
    assert me.status_code == 200
    assert me.json() == user


async def test_login_answers_no_store(anonymous: httpx.AsyncClient) -> None:
    """Token responses must not be cached (RFC 6749 5.1)."""
    await register(anonymous)
    response = await login(anonymous)
    assert response.headers["cache-control"] == "no-store"


async def test_a_second_account_with_the_same_email_is_a_409_problem(
    anonymous: httpx.AsyncClient,
) -> None:
    """An email address has one account, whatever its case."""
    await register(anonymous)
    response = await anonymous.post(
        "/api/auth/register", json={"email": "ADA@example.org", "password": "other password"}
    )
    assert_problem(response, 409)


@pytest.mark.parametrize(
    "password",
    ["12345678", "x" * 256, "pass word", "пароль-пароль", "🔑🔑🔑🔑🔑🔑🔑🔑", "\"';--%_*\\"],
)
async def test_any_password_of_8_to_256_characters_works(
    anonymous: httpx.AsyncClient, password: str
) -> None:
    """Passwords are any characters, 8 to 256 of them; each one logs in afterwards."""
    await register(anonymous, password=password)
    assert (await login(anonymous, password=password)).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"email": EMAIL, "password": "1234567"},
        {"email": EMAIL, "password": "x" * 257},
        {"email": "not an email", "password": PASSWORD},
        {"email": EMAIL},
        {"email": EMAIL, "password": PASSWORD, "is_admin": True},
    ],
    ids=["short", "long", "bad-email", "no-password", "unknown-field"],
)
async def test_invalid_registration_is_a_422_problem(
    anonymous: httpx.AsyncClient, database: aiodatabases.Database, body: dict[str, Any]
) -> None:
    """A short or long password, a bad email or an extra field is refused; nothing stored."""
    assert_problem(await anonymous.post("/api/auth/register", json=body), 422)
    assert await database.fetch_val(sa.select(sa.func.count()).select_from(users)) == 0


async def test_an_email_with_a_lone_surrogate_is_a_422_problem(
    anonymous: httpx.AsyncClient, database: aiodatabases.Database
) -> None:
    """Half of a surrogate pair, escaped in the JSON, is no part of an email; nothing stored."""
    document = '{"email": "ada\\ud800@example.org", "password": "' + PASSWORD + '"}'
    response = await anonymous.post(
        "/api/auth/register", content=document, headers={"Content-Type": "application/json"}
    )
    problem = assert_problem(response, 422)
    assert ["body", "email"] in [error["loc"] for error in problem["errors"]]
    assert await database.fetch_val(sa.select(sa.func.count()).select_from(users)) == 0


async def test_stored_hash_is_argon2id_at_owasp_parameters(
    anonymous: httpx.AsyncClient, database: aiodatabases.Database
) -> None:
    """The stored hash is $argon2id$ with m=19456, t=2, p=1 and is not the password."""
    await register(anonymous)
    stored = await stored_hash(database)
    assert re.fullmatch(
        r"\$argon2id\$v=19\$m=19456,t=2,p=1\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+", stored
    )
    assert PASSWORD not in stored


async def test_login_rehashes_when_the_parameters_rise(settings: Settings) -> None:
    """A hash made with the old cost is replaced at the next login with the new cost."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            await register(http)
    stronger = create_app(settings.model_copy(update={"argon2_time_cost": 3}))
    async with stronger.router.lifespan_context(stronger):
        transport = httpx.ASGITransport(app=stronger)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            database: aiodatabases.Database = stronger.state.database
            assert ",t=2," in await stored_hash(database)
            assert (await login(http)).status_code == 200
            assert ",t=3," in await stored_hash(database)
            assert (await login(http)).status_code == 200


def test_settings_refuse_argon2_below_the_owasp_floor() -> None:
    """m below 19456 KiB or t below 2 is a configuration error, not a weaker hash."""
    with pytest.raises(ValueError, match="argon2_memory_kib"):
        Settings(argon2_memory_kib=19455)
    with pytest.raises(ValueError, match="argon2_time_cost"):
        Settings(argon2_time_cost=1)


@pytest.mark.parametrize(
    ("email", "password"),
    [(EMAIL, "the wrong password"), ("nobody@example.org", PASSWORD)],
    ids=["wrong-password", "unknown-email"],
)
async def test_failed_login_is_one_401_problem(
    anonymous: httpx.AsyncClient, email: str, password: str
) -> None:
    """A wrong password and an unknown email get the very same problem."""
    await register(anonymous)
    response = await login(anonymous, email, password)
    problem = assert_problem(response, 401)
    assert problem["detail"] == "the email address or the password is wrong"
    assert set(response.json()) == {"type", "title", "status", "detail", "instance"}


async def test_ten_failures_throttle_the_account_with_retry_after(
    anonymous: httpx.AsyncClient,
) -> None:
    """After 10 failures, even the right password gets 429 with Retry-After; others log in."""
    await register(anonymous)
    await register(anonymous, email="grace@example.org")
    for _ in range(10):
        assert (await login(anonymous, password="wrong password")).status_code == 401
    throttled = await login(anonymous)
    assert_problem(throttled, 429)
    assert 1 <= int(throttled.headers["retry-after"]) <= 900
    assert (await login(anonymous, email="grace@example.org")).status_code == 200


async def test_an_unknown_email_is_throttled_like_a_known_one(
    anonymous: httpx.AsyncClient,
) -> None:
    """429 does not reveal whether an address has an account."""
    for _ in range(10):
        await login(anonymous, email="nobody@example.org")
    assert_problem(await login(anonymous, email="nobody@example.org"), 429)


async def test_the_throttle_window_ends(app: FastAPI, anonymous: httpx.AsyncClient) -> None:
    """Once the window has passed, the account may log in again."""
    await register(anonymous)
    for _ in range(10):
        await login(anonymous, password="wrong password")
    assert (await login(anonymous)).status_code == 429
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=901)
    app.state.clock = lambda: later
    assert (await login(anonymous)).status_code == 200


async def test_refresh_rotates_and_the_old_token_is_spent(anonymous: httpx.AsyncClient) -> None:
    """A refresh answers a new pair; the new refresh token works, the access token too."""
    await register(anonymous)
    first = await tokens_of(anonymous)
    response = await anonymous.post(
        "/api/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    assert response.status_code == 200
    second = response.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert (await anonymous.get("/api/users/me", headers=bearer(second))).status_code == 200
    third = await anonymous.post(
        "/api/auth/refresh", json={"refresh_token": second["refresh_token"]}
    )
    assert third.status_code == 200


async def test_a_reused_refresh_token_revokes_the_whole_family(
    anonymous: httpx.AsyncClient,
) -> None:
    """Replaying a spent refresh token ends the session: its successors and access die too."""
    await register(anonymous)
    first = await tokens_of(anonymous)
    second = (
        await anonymous.post("/api/auth/refresh", json={"refresh_token": first["refresh_token"]})
    ).json()
    replay = await anonymous.post(
        "/api/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    assert_problem(replay, 401)
    after = await anonymous.post(
        "/api/auth/refresh", json={"refresh_token": second["refresh_token"]}
    )
    assert_problem(after, 401)
    assert_problem(await anonymous.get("/api/users/me", headers=bearer(second)), 401)
    other_session = await tokens_of(anonymous)
    assert (await anonymous.get("/api/users/me", headers=bearer(other_session))).status_code == 200


async def test_an_unknown_or_expired_refresh_token_is_a_401(
    app: FastAPI, anonymous: httpx.AsyncClient
) -> None:
    """A made-up refresh token, or one past its 30 days, gets 401."""
    await register(anonymous)
    made_up = await anonymous.post("/api/auth/refresh", json={"refresh_token": "x" * 43})
    assert_problem(made_up, 401)
    pair = await tokens_of(anonymous)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=31)
    app.state.clock = lambda: later
    expired = await anonymous.post(
        "/api/auth/refresh", json={"refresh_token": pair["refresh_token"]}
    )
    assert_problem(expired, 401)


async def test_logout_ends_the_session_of_the_token(anonymous: httpx.AsyncClient) -> None:
    """After logout, the access and refresh tokens of that session stop working; others don't."""
    await register(anonymous)
    pair = await tokens_of(anonymous)
    other = await tokens_of(anonymous)
    assert (await anonymous.post("/api/auth/logout", headers=bearer(pair))).status_code == 204
    assert_problem(await anonymous.get("/api/users/me", headers=bearer(pair)), 401)
    refreshed = await anonymous.post(
        "/api/auth/refresh", json={"refresh_token": pair["refresh_token"]}
    )
    assert_problem(refreshed, 401)
    assert (await anonymous.get("/api/users/me", headers=bearer(other))).status_code == 200


@pytest.mark.parametrize("tags", [[], ["a", "b"]], ids=["without-tags", "with-tags"])
async def test_a_note_is_not_created_in_an_ended_session(
    anonymous: httpx.AsyncClient, database: aiodatabases.Database, tags: list[str]
) -> None:
    """The session is checked in the create's own statement: after logout, a create with the
    session's (unexpired) token is 401 and writes neither the note nor its tags."""
    await register(anonymous)
    pair = await tokens_of(anonymous)
    note = {"title": "kept", "tags": tags}
    assert (await anonymous.post("/api/notes", json=note, headers=bearer(pair))).status_code == 201
    assert (await anonymous.post("/api/auth/logout", headers=bearer(pair))).status_code == 204
    refused = await anonymous.post(
        "/api/notes", json={"title": "lost", "tags": tags}, headers=bearer(pair)
    )
    assert_problem(refused, 401)
    assert refused.headers["www-authenticate"].startswith("Bearer")
    titles = await database.fetch_all(sa.text("SELECT title FROM notes"))
    assert [row[0] for row in titles] == ["kept"]
    assert await database.fetch_val(sa.text("SELECT COUNT(*) FROM note_tags")) == len(tags)


async def test_password_change_needs_the_current_one_and_ends_other_sessions(
    anonymous: httpx.AsyncClient,
) -> None:
    """A wrong current password is 403; a right one changes it and ends the other sessions."""
    await register(anonymous)
    mine = await tokens_of(anonymous)
    elsewhere = await tokens_of(anonymous)
    wrong = await anonymous.put(
        "/api/users/me/password",
        json={"current_password": "not it at all", "new_password": "a brand new password"},
        headers=bearer(mine),
    )
    assert_problem(wrong, 403)
    changed = await anonymous.put(
        "/api/users/me/password",
        json={"current_password": PASSWORD, "new_password": "a brand new password"},
        headers=bearer(mine),
    )
    assert changed.status_code == 204
    assert (await anonymous.get("/api/users/me", headers=bearer(mine))).status_code == 200
    assert_problem(await anonymous.get("/api/users/me", headers=bearer(elsewhere)), 401)
    assert_problem(await login(anonymous), 401)
    assert (await login(anonymous, password="a brand new password")).status_code == 200


async def test_mass_assignment_changes_nothing(
    client: httpx.AsyncClient, other_client: httpx.AsyncClient, database: aiodatabases.Database
) -> None:
    """id, owner_id, created_at and version in a body are refused; the note stays as it was."""
    mine = (await client.post("/api/notes", json={"title": "mine"})).json()
    theirs = (await other_client.post("/api/notes", json={"title": "theirs"})).json()
    owner_ids = {
        row[0] for row in await database.fetch_all(sa.text("SELECT DISTINCT owner_id FROM notes"))
    }
    assert len(owner_ids) == 2
    smuggled = {
        "id": theirs["id"],
        "owner_id": next(iter(owner_ids)),
        "created_at": "2000-01-01T00:00:00Z",
        "version": 99,
    }
    for field, value in smuggled.items():
        body = {"title": "changed", field: value}
        assert_problem(await client.post("/api/notes", json=body), 422)
        assert_problem(await client.put(f"/api/notes/{mine['id']}", json=body), 422)
        assert_problem(await client.patch(f"/api/notes/{mine['id']}", json=body), 422)
        batch = {"notes": [body]}
        assert_problem(await client.post("/api/notes/batch", json=batch), 422)
    assert (await client.get(f"/api/notes/{mine['id']}")).json() == mine
    assert (await other_client.get(f"/api/notes/{theirs['id']}")).json() == theirs
    total = await database.fetch_val(sa.text("SELECT COUNT(*) FROM notes"))
    assert total == 2


async def test_no_response_carries_a_password_or_a_hash(
    anonymous: httpx.AsyncClient, database: aiodatabases.Database
) -> None:
    """Register, log in, refresh, me, password change and errors never echo secrets."""
    responses = [
        await anonymous.post("/api/auth/register", json={"email": EMAIL, "password": PASSWORD})
    ]
    stored = await stored_hash(database)
    responses.append(await login(anonymous))
    pair = responses[-1].json()
    responses.append(
        await anonymous.post("/api/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    )
    pair = responses[-1].json()
    responses.append(await anonymous.get("/api/users/me", headers=bearer(pair)))
    responses.append(await login(anonymous, password="wrong but long"))
    responses.append(
        await anonymous.post("/api/auth/register", json={"email": EMAIL, "password": "short"})
    )
    responses.append(
        await anonymous.put(
            "/api/users/me/password",
            json={"current_password": PASSWORD, "new_password": "another password"},
            headers=bearer(pair),
        )
    )
    for response in responses:
        text = response.text
        assert PASSWORD not in text
        assert "wrong but long" not in text
        assert "another password" not in text
        assert stored not in text
        assert "$argon2" not in text
        assert "password_hash" not in text


async def test_logs_of_a_full_run_hold_no_password_or_token(
    anonymous: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Every log record of a register, login, refresh, use, reuse and logout run is clean."""
    caplog.set_level(logging.DEBUG)
    await register(anonymous)
    pair = await tokens_of(anonymous)
    secrets = {PASSWORD, pair["access_token"], pair["refresh_token"], "wrong password 1"}
    await login(anonymous, password="wrong password 1")
    refreshed = (
        await anonymous.post("/api/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    ).json()
    secrets |= {refreshed["access_token"], refreshed["refresh_token"]}
    await anonymous.post("/api/notes", json={"title": "t"}, headers=bearer(refreshed))
    await anonymous.get("/api/users/me", headers={"Authorization": "Bearer not.a.token"})
    await anonymous.post("/api/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    await anonymous.post("/api/auth/logout", headers=bearer(refreshed))
    assert caplog.records, "the run logged nothing: the check would be empty"
    for record in caplog.records:
        line = record.getMessage() + repr(record.args)
        for secret in secrets:
            assert secret not in line, record.name
        assert "$argon2" not in line


async def test_generated_secret_file_is_owner_only_and_kept(tmp_path: Any) -> None:
    """On the embedded default with no secret, one is generated once into a 0600 file."""
    url = f"sqlite:///{tmp_path}/notes.db"
    first = create_app(Settings(database_url=SecretStr(url)))
    path = tmp_path / "notes.db.secret"
    assert path.stat().st_mode & 0o777 == 0o600
    content = path.read_text()
    second = create_app(Settings(database_url=SecretStr(url)))
    assert path.read_text() == content
    token = first.state.auth.keys.issue(1, 1, dt.datetime.now(dt.UTC))
    assert second.state.auth.keys.verify(token).user_id == 1


def test_secret_file_readable_by_others_is_refused(tmp_path: Any) -> None:
    """A secret file that group or others may read stops the app from starting."""
    path = tmp_path / "notes.db.secret"
    path.write_text("s" * 64)
    path.chmod(0o644)
    with pytest.raises(RuntimeError, match="chmod 600"):
        create_app(Settings(database_url=SecretStr(f"sqlite:///{tmp_path}/notes.db")))


def test_a_server_database_needs_a_configured_secret() -> None:
    """No secret is generated for PostgreSQL or MySQL: the setting is required there."""
    with pytest.raises(RuntimeError, match="NOTES_JWT_SECRET"):
        create_app(Settings(database_url=SecretStr("postgresql://u@h/db")))


def test_a_short_secret_is_refused() -> None:
    """A signing secret under 32 characters is a configuration error."""
    with pytest.raises(ValueError, match="jwt_secret"):
        Settings(jwt_secret=SecretStr("short"))


async def test_emails_differ_by_accent_but_not_by_ascii_case(anonymous: httpx.AsyncClient) -> None:
    """On every backend: "Ada@" is "ada@", while "adá@" is another account (no collation)."""
    await register(anonymous, email="ada@example.org")
    clash = await anonymous.post(
        "/api/auth/register", json={"email": "ADA@EXAMPLE.ORG", "password": PASSWORD}
    )
    assert_problem(clash, 409)
    await register(anonymous, email="adá@example.org", password="the accented one")
    assert (await login(anonymous, "adá@example.org", "the accented one")).status_code == 200
    assert_problem(await login(anonymous, "adá@example.org", PASSWORD), 401)
    assert (await login(anonymous, "Ada@Example.org", PASSWORD)).status_code == 200


async def test_concurrent_attempts_cannot_slip_past_the_throttle(
    anonymous: httpx.AsyncClient,
) -> None:
    """30 wrong passwords at once: at most 10 are checked, the rest get 429, and so does the
    right password afterwards."""
    await register(anonymous)
    responses = await asyncio.gather(
        *(login(anonymous, password=f"wrong password {index}") for index in range(30))
    )
    statuses = sorted(response.status_code for response in responses)
    assert statuses.count(401) <= 10
    assert statuses.count(429) >= 20
    assert set(statuses) <= {401, 429}
    assert (await login(anonymous)).status_code == 429
