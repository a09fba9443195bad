"""Access tokens (JWT, HS256 only) and refresh tokens (random, stored as SHA-256).

An access token is a JWT signed with HS256 and nothing else: the algorithm is pinned when
decoding, so ``alg: none`` or another algorithm is refused. Its header names the key (``kid``)
so that the secret can rotate: the current key signs, former keys listed in the settings still
verify. ``exp``, ``iat``, ``sub`` and ``sid`` (the login session) are required; ``nbf`` is
checked when present.

A key ring remembers the tokens it verified (a few thousand, the least recently used go
first), keyed by the whole token, signature included: a token seen before costs a dictionary
lookup and an expiry check, and a token that differs in any character is verified afresh.
Only the signature check is remembered: the caller still looks up the login session on every
request, so that a logout or a revoked session takes effect at once.

The secret comes from ``NOTES_JWT_SECRET``. Without one, on the embedded SQLite database, a
secret is generated once and kept in a file only its owner may read (mode 0600); a server
database needs it configured.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import secrets
import stat
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jwt

from .errors import UnauthorizedError
from .settings import MIN_SECRET_LENGTH, Settings

__all__ = [
    "ALGORITHM",
    "AccessClaims",
    "KeyRing",
    "hash_refresh_token",
    "load_secret",
    "new_refresh_token",
]

logger = logging.getLogger("notes.tokens")

#: The one algorithm access tokens are signed and accepted with.
ALGORITHM = "HS256"

#: The audience of the service's access tokens: a token made for something else is refused.
AUDIENCE = "notes"

#: How many verified access tokens a key ring remembers.
VERIFIED_TOKENS = 4096


class SecretConfigurationError(RuntimeError):
    """No usable signing secret: none configured, or its file is unsafe."""


@dataclass(frozen=True, slots=True)
class AccessClaims:
    """What a valid access token says: who (user id) and which login session."""

    user_id: int
    session_id: int


def key_id(secret: str) -> str:
    """Name a key by a digest of it: rotating the secret changes the ``kid``."""
    return hashlib.sha256(b"notes-kid:" + secret.encode()).hexdigest()[:16]


def _default_secret_file(settings: Settings) -> Path | None:
    url = settings.database_url.get_secret_value()
    path = url.split("?", 1)[0].split(":///", 1)[-1] if ":///" in url else ""
    if not path or path == ":memory:" or path.startswith("file:"):
        return None
    return Path(path + ".secret")


def load_secret(settings: Settings) -> str:
    """Return the signing secret: configured, or generated once on the embedded database.

    Raises:
        SecretConfigurationError: A server database without ``NOTES_JWT_SECRET``, or a
            secret file that others may read or that holds too short a secret.
    """
    if settings.jwt_secret is not None:
        return settings.jwt_secret.get_secret_value()
    if not settings.is_embedded:
        raise SecretConfigurationError(
            "set NOTES_JWT_SECRET (at least 32 characters): a secret is only generated "
            "for the embedded SQLite database"
        )
    path = settings.secret_file or _default_secret_file(settings)
    if path is None:
        # An in-memory database lives as long as the process; so does its secret.
        return secrets.token_urlsafe(48)
    return _secret_from_file(path)


def _secret_from_file(path: Path) -> str:
    if not path.exists():
        _create_secret_file(path)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise SecretConfigurationError(
            f"{path} may be read by others (mode {mode:o}); run `chmod 600 {path}`"
        )
    secret = path.read_text(encoding="utf-8").strip()
    if len(secret) < MIN_SECRET_LENGTH:
        raise SecretConfigurationError(f"{path} holds less than {MIN_SECRET_LENGTH} characters")
    return secret


def _create_secret_file(path: Path) -> None:
    """Write a new secret to path, atomically and readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(secrets.token_urlsafe(48) + "\n")
        try:
            # A link fails if another process made the file meanwhile: its secret wins.
            os.link(temporary, path)
            logger.info("generated a token signing secret in %s", path)
        except FileExistsError:
            pass
    finally:
        temporary.unlink(missing_ok=True)


class KeyRing:
    """Signs access tokens with the current key; verifies with it and former ones.

    Its keys never change, so the tokens it remembers as verified stay verified until they
    expire; a ring built with other keys starts with none. Shared by all tasks of one event
    loop.

    Args:
        current: The secret that signs.
        previous: Former secrets, still accepted.
        lifetime: Seconds an access token lives.
        remember: How many verified tokens to keep (0: verify every time).
        timer: The current time in seconds since the epoch, which a remembered token's
            expiry is checked against.
    """

    def __init__(
        self,
        current: str,
        previous: list[str] | None = None,
        *,
        lifetime: int,
        remember: int = VERIFIED_TOKENS,
        timer: Callable[[], float] = time.time,
    ) -> None:
        self.current_kid = key_id(current)
        self._keys = {key_id(secret): secret for secret in [*(previous or []), current]}
        self._lifetime = dt.timedelta(seconds=lifetime)
        self._remember = remember
        self._timer = timer
        # token -> (its claims, its exp); the most recently used last.
        self._verified: OrderedDict[str, tuple[AccessClaims, int]] = OrderedDict()

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRing:
        """Build the key ring of an application."""
        previous = [secret.get_secret_value() for secret in settings.jwt_previous_secrets]
        return cls(load_secret(settings), previous, lifetime=settings.access_token_seconds)

    @property
    def lifetime(self) -> int:
        """Seconds an access token lives."""
        return int(self._lifetime.total_seconds())

    def issue(self, user_id: int, session_id: int, now: dt.datetime) -> str:
        """Return a signed access token for a user's session."""
        claims = {
            "sub": str(user_id),
            "sid": session_id,
            "aud": AUDIENCE,
            "iat": now,
            "exp": now + self._lifetime,
            "jti": secrets.token_hex(8),
        }
        return jwt.encode(
            claims,
            self._keys[self.current_kid],
            algorithm=ALGORITHM,
            headers={"kid": self.current_kid},
        )

    def verify(self, token: str) -> AccessClaims:
        """Check an access token's header, signature and claims; remember it if valid.

        Raises:
            UnauthorizedError: The token is malformed, signed otherwise or with an unknown
                key, expired, not yet valid, or lacks a required claim.
        """
        verified = self._verified
        remembered = verified.get(token)
        if remembered is None:
            claims, expires = self._check(token)
        else:
            claims, expires = remembered
        if expires <= self._timer():
            verified.pop(token, None)
            raise _refused("ExpiredSignatureError")
        if remembered is None:
            if self._remember > 0:
                if len(verified) >= self._remember:
                    verified.popitem(last=False)
                verified[token] = (claims, expires)
        else:
            verified.move_to_end(token)
        return claims

    def _check(self, token: str) -> tuple[AccessClaims, int]:
        """Verify a token in full; return its claims and its expiry (``exp``)."""
        try:
            header = jwt.get_unverified_header(token)
            kid = header.get("kid")
            if header.get("alg") != ALGORITHM or not isinstance(kid, str) or kid not in self._keys:
                raise jwt.InvalidTokenError("unknown key or algorithm")
            claims = jwt.decode(
                token,
                self._keys[kid],
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                options={"require": ["exp", "iat", "sub", "sid", "aud"]},
            )
            subject, session = claims["sub"], claims["sid"]
            if not isinstance(subject, str) or not subject.isdigit():
                raise jwt.InvalidTokenError("bad subject")
            if not isinstance(session, int) or isinstance(session, bool):
                raise jwt.InvalidTokenError("bad session")
            # decode() checked that exp is an integer and still ahead.
            return AccessClaims(user_id=int(subject), session_id=session), int(claims["exp"])
        except jwt.InvalidTokenError as exc:
            raise _refused(type(exc).__name__) from None


def _refused(reason: str) -> UnauthorizedError:
    # The reason stays here: a client only learns that the token is not valid.
    logger.info("access token refused: %s", reason)
    return UnauthorizedError("the access token is not valid; log in again", invalid_token=True)


def new_refresh_token() -> str:
    """Return a new refresh token: 256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def hash_refresh_token(token: str) -> str:
    """Return what is stored of a refresh token: its SHA-256, in hex."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
