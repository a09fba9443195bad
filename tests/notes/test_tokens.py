"""Access tokens: only HS256 with a known key, a valid signature and live claims get in."""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI

from notes.errors import UnauthorizedError
from notes.tokens import AUDIENCE, AccessClaims, KeyRing, key_id

from .conftest import TEST_SECRET, add_user
from .helpers import assert_problem


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(user_id: int, session_id: int, **changes: Any) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC)
    claims: dict[str, Any] = {
        "sub": str(user_id),
        "sid": session_id,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + dt.timedelta(minutes=5),
    }
    for key, value in changes.items():
        if value is None:
            claims.pop(key, None)
        else:
            claims[key] = value
    return claims


def _signed(claims: dict[str, Any], *, key: str = TEST_SECRET, **header: Any) -> str:
    return jwt.encode(claims, key, algorithm="HS256", headers={"kid": key_id(key), **header})


def _session_of(token: str) -> tuple[int, int]:
    claims = jwt.decode(token, options={"verify_signature": False})
    return int(claims["sub"]), int(claims["sid"])


def _unsigned(user_id: int, session_id: int) -> str:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": key_id(TEST_SECRET)}).encode())
    now = int(dt.datetime.now(dt.UTC).timestamp())
    payload = {"sub": str(user_id), "sid": session_id, "aud": AUDIENCE, "iat": now}
    payload["exp"] = now + 300
    return f"{header}.{_b64(json.dumps(payload).encode())}."


def _rs256(user_id: int, session_id: int) -> str:
    # A token claiming RS256, the algorithm-confusion shape; its signature is noise.
    header = _b64(json.dumps({"alg": "RS256", "typ": "JWT", "kid": key_id(TEST_SECRET)}).encode())
    now = int(dt.datetime.now(dt.UTC).timestamp())
    payload = {"sub": str(user_id), "sid": session_id, "aud": AUDIENCE, "iat": now}
    payload["exp"] = now + 300
    return f"{header}.{_b64(json.dumps(payload).encode())}.{_b64(bytes(256))}"


def _tampered_payload(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = str(int(claims["sub"]) + 1)
    return f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"


def _tampered_signature(token: str) -> str:
    header, payload, signature = token.split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    return f"{header}.{payload}.{flipped}"


def _hs512(user_id: int, session_id: int) -> str:
    return jwt.encode(
        _claims(user_id, session_id),
        TEST_SECRET,
        algorithm="HS512",
        headers={"kid": key_id(TEST_SECRET)},
    )


def _past(minutes: int) -> dt.datetime:
    return dt.datetime.now(dt.UTC) - dt.timedelta(minutes=minutes)


def _future(minutes: int) -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(minutes=minutes)


Forge = Callable[[int, int, str], str]

FORGERIES: dict[str, Forge] = {
    "alg-none": lambda u, s, good: _unsigned(u, s),
    "alg-hs512": lambda u, s, good: _hs512(u, s),
    "alg-rs256": lambda u, s, good: _rs256(u, s),
    "wrong-key": lambda u, s, good: _signed(_claims(u, s), key="another-secret-" + "y" * 40),
    "wrong-key-known-kid": lambda u, s, good: jwt.encode(
        _claims(u, s), "z" * 48, algorithm="HS256", headers={"kid": key_id(TEST_SECRET)}
    ),
    "tampered-payload": lambda u, s, good: _tampered_payload(good),
    "tampered-signature": lambda u, s, good: _tampered_signature(good),
    "expired": lambda u, s, good: _signed(_claims(u, s, exp=_past(1), iat=_past(20))),
    "no-exp": lambda u, s, good: _signed(_claims(u, s, exp=None)),
    "future-nbf": lambda u, s, good: _signed(_claims(u, s, nbf=_future(10))),
    "unknown-kid": lambda u, s, good: jwt.encode(
        _claims(u, s), TEST_SECRET, algorithm="HS256", headers={"kid": "retired-key"}
    ),
    "no-kid": lambda u, s, good: jwt.encode(_claims(u, s), TEST_SECRET, algorithm="HS256"),
    "wrong-audience": lambda u, s, good: _signed(_claims(u, s, aud="someone-else")),
    "no-session": lambda u, s, good: _signed(_claims(u, s, sid=None)),
    "other-session": lambda u, s, good: _signed(_claims(u, s + 1000)),
    "not-a-jwt": lambda u, s, good: "not-a-token",
    "empty-segments": lambda u, s, good: "..",
}


@pytest.fixture
async def principal(app: FastAPI) -> tuple[int, int, str]:
    """A user's (id, session id, valid access token)."""
    user_id, token = await add_user(app, "tokens@example.org")
    _, session_id = _session_of(token)
    return user_id, session_id, token


async def test_a_well_formed_token_is_accepted(
    anonymous: httpx.AsyncClient, principal: tuple[int, int, str]
) -> None:
    """The control: the token forgeries below start from one that works."""
    user_id, session_id, token = principal
    for candidate in (token, _signed(_claims(user_id, session_id))):
        response = await anonymous.get(
            "/api/users/me", headers={"Authorization": f"Bearer {candidate}"}
        )
        assert response.status_code == 200


# The HS512 forgery reuses the service's (short for HS512) secret on purpose.
@pytest.mark.filterwarnings("ignore:The HMAC key is")
@pytest.mark.parametrize("forgery", list(FORGERIES))
async def test_forged_or_stale_tokens_get_401_with_bearer_challenge(
    anonymous: httpx.AsyncClient, principal: tuple[int, int, str], forgery: str
) -> None:
    """Each way of forging or outliving a token gets 401 on a user route and a note route."""
    user_id, session_id, token = principal
    forged = FORGERIES[forgery](user_id, session_id, token)
    headers = {"Authorization": f"Bearer {forged}"}
    for response in (
        await anonymous.get("/api/users/me", headers=headers),
        await anonymous.get("/api/notes", headers=headers),
    ):
        assert_problem(response, 401)
        assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'


async def test_a_token_signed_with_a_previous_secret_still_works(
    settings: Any, anonymous: httpx.AsyncClient, principal: tuple[int, int, str]
) -> None:
    """Rotation: a former secret listed in jwt_previous_secrets verifies; its kid is known."""
    from pydantic import SecretStr

    from notes import create_app

    user_id, session_id, token = principal
    rotated = create_app(
        settings.model_copy(
            update={
                "jwt_secret": SecretStr("the-next-secret-" + "n" * 40),
                "jwt_previous_secrets": [SecretStr(TEST_SECRET)],
            }
        )
    )
    async with rotated.router.lifespan_context(rotated):
        transport = httpx.ASGITransport(app=rotated)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            headers = {"Authorization": f"Bearer {token}"}
            assert (await http.get("/api/users/me", headers=headers)).status_code == 200
            fresh = rotated.state.auth.keys.issue(user_id, session_id, dt.datetime.now(dt.UTC))
            assert (
                jwt.get_unverified_header(fresh)["kid"] != jwt.get_unverified_header(token)["kid"]
            )
    # Without the former secret listed, its tokens are refused.
    dropped = create_app(
        settings.model_copy(update={"jwt_secret": SecretStr("the-next-secret-" + "n" * 40)})
    )
    async with dropped.router.lifespan_context(dropped):
        transport = httpx.ASGITransport(app=dropped)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            headers = {"Authorization": f"Bearer {token}"}
            assert_problem(await http.get("/api/users/me", headers=headers), 401)


@pytest.mark.parametrize(
    "authorization", ["", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Token abc"]
)
async def test_missing_or_other_scheme_credentials_get_401(
    anonymous: httpx.AsyncClient, authorization: str
) -> None:
    """No bearer token at all is a 401 with a plain Bearer challenge."""
    headers = {"Authorization": authorization} if authorization else {}
    response = await anonymous.get("/api/notes", headers=headers)
    assert_problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")


# -- remembered tokens ---------------------------------------------------------------------


class _Timer:
    """A settable clock in seconds since the epoch, starting at the real time."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def _counting_decode(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every token that the key ring decodes in full (signature and claims)."""
    decoded: list[str] = []
    decode = jwt.decode

    def counted(token: str, *args: Any, **kwargs: Any) -> Any:
        decoded.append(token)
        return decode(token, *args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counted)
    return decoded


def test_a_verified_token_is_remembered_and_not_decoded_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The second use of a token is a lookup: same claims, no second signature check."""
    keys = KeyRing(TEST_SECRET, lifetime=300)
    token = keys.issue(7, 3, dt.datetime.now(dt.UTC))
    decoded = _counting_decode(monkeypatch)
    assert keys.verify(token) == AccessClaims(user_id=7, session_id=3)
    assert keys.verify(token) == AccessClaims(user_id=7, session_id=3)
    assert decoded == [token]


def test_a_remembered_token_is_refused_once_it_expires() -> None:
    """Expiry is checked on every use: a remembered token stops working at its exp."""
    timer = _Timer()
    keys = KeyRing(TEST_SECRET, lifetime=300, timer=timer)
    issued = dt.datetime.fromtimestamp(int(timer.now), dt.UTC)
    token = keys.issue(7, 3, issued)
    expires = issued.timestamp() + 300
    assert keys.verify(token).user_id == 7
    timer.now = expires - 1
    assert keys.verify(token).user_id == 7
    timer.now = expires
    with pytest.raises(UnauthorizedError):
        keys.verify(token)
    # Forgotten as well as refused: turning the clock back does not revive it.
    assert len(keys._verified) == 0


@pytest.mark.parametrize("tamper", [_tampered_payload, _tampered_signature])
def test_a_tampered_copy_of_a_remembered_token_is_refused(
    tamper: Callable[[str], str],
) -> None:
    """Remembered tokens are keyed by the whole token: a changed one is verified afresh."""
    keys = KeyRing(TEST_SECRET, lifetime=300)
    token = keys.issue(7, 3, dt.datetime.now(dt.UTC))
    assert keys.verify(token).user_id == 7
    with pytest.raises(UnauthorizedError):
        keys.verify(tamper(token))
    assert keys.verify(token).user_id == 7


def test_the_least_recently_used_token_is_forgotten_beyond_the_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The ring keeps at most ``remember`` tokens; using one makes it the most recent."""
    keys = KeyRing(TEST_SECRET, lifetime=300, remember=2)
    now = dt.datetime.now(dt.UTC)
    first, second, third = (keys.issue(7, session, now) for session in (1, 2, 3))
    decoded = _counting_decode(monkeypatch)
    for token in (first, second, first, third, first, second):
        keys.verify(token)
    # second was the least recent when third came, so it had to be decoded again.
    assert decoded == [first, second, third, second]


def test_a_ring_with_other_keys_refuses_a_token_another_ring_remembered() -> None:
    """Remembered tokens belong to a ring: new keys (a new ring) verify everything afresh."""
    old = KeyRing(TEST_SECRET, lifetime=300)
    token = old.issue(7, 3, dt.datetime.now(dt.UTC))
    assert old.verify(token).user_id == 7
    new = KeyRing("the-next-secret-" + "n" * 40, lifetime=300)
    with pytest.raises(UnauthorizedError):
        new.verify(token)


async def test_logout_takes_effect_at_once_for_a_remembered_token(
    anonymous: httpx.AsyncClient, principal: tuple[int, int, str]
) -> None:
    """A token used (and remembered) before a logout gets 401 on its next request, on every
    route, even for the caller's own notes: reads check the session in the same statement."""
    _, _, token = principal
    headers = {"Authorization": f"Bearer {token}"}
    created = await anonymous.post("/api/notes", json={"title": "mine"}, headers=headers)
    assert created.status_code == 201
    note = f"/api/notes/{created.json()['id']}"
    for _ in range(2):
        assert (await anonymous.get(note, headers=headers)).status_code == 200
        assert len((await anonymous.get("/api/notes", headers=headers)).json()["items"]) == 1
    assert (await anonymous.post("/api/auth/logout", headers=headers)).status_code == 204
    for response in (
        await anonymous.get(note, headers=headers),
        await anonymous.get("/api/notes", headers=headers),
        await anonymous.get("/api/notes?q=mine", headers=headers),
        await anonymous.get("/api/users/me", headers=headers),
        await anonymous.post("/api/notes", json={"title": "after"}, headers=headers),
        await anonymous.post("/api/notes/batch", json={"notes": [{"title": "b"}]}, headers=headers),
        await anonymous.patch(note, json={"title": "changed"}, headers=headers),
        await anonymous.put(note, json={"title": "replaced"}, headers=headers),
        await anonymous.delete(note, headers=headers),
    ):
        assert_problem(response, 401)
        assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'


async def test_a_signed_token_naming_another_users_session_is_refused(
    app: FastAPI, anonymous: httpx.AsyncClient, principal: tuple[int, int, str]
) -> None:
    """A session counts only for its own user: sub and sid must belong together."""
    user_id, _, _ = principal
    _, other_token = await add_user(app, "someone-else@example.org")
    _, other_session = _session_of(other_token)
    forged = _signed(_claims(user_id, other_session))
    headers = {"Authorization": f"Bearer {forged}"}
    for path in ("/api/notes", "/api/users/me"):
        response = await anonymous.get(path, headers=headers)
        assert_problem(response, 401)
        assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
