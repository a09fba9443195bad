"""Signed cookies, CSRF tokens and the security headers of the pages (no I/O here).

The session cookie says which user and which login session a browser is, signed with a key
derived from the service's signing secret (so a cookie is never a bearer token, nor a bearer
token a cookie). It is HttpOnly and SameSite=Lax, and Secure when the page was served over
HTTPS.

Every form carries a CSRF token: an HMAC of what identifies the browser, its login session
when it has one, else a random value kept in its own HttpOnly cookie (a signed double-submit
cookie). A form posted without the token, or with another browser's, is refused with 403.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "CSRF_COOKIE",
    "CSRF_FIELD",
    "SESSION_COOKIE",
    "CookieSession",
    "Signer",
    "delete_cookie",
    "is_https",
    "new_csrf_seed",
    "safe_next",
    "set_cookie",
]

SESSION_COOKIE = "notes_session"
CSRF_COOKIE = "notes_csrf"
#: The name of the hidden field that carries the CSRF token in every form.
CSRF_FIELD = "csrf_token"

#: Only the service's own scripts, styles and images; no inline script, no framing.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


@dataclass(frozen=True, slots=True)
class CookieSession:
    """What a valid session cookie says: who, which login session, and until when."""

    user_id: int
    session_id: int
    expires_at: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    """Signs and checks session cookies and CSRF tokens; immutable, shared by all tasks.

    Args:
        secret: The service's signing secret; the keys used here are derived from it.
    """

    def __init__(self, secret: str) -> None:
        root = secret.encode("utf-8")
        self._session_key = hmac.new(root, b"notes web session cookie", hashlib.sha256).digest()
        self._csrf_key = hmac.new(root, b"notes web csrf token", hashlib.sha256).digest()

    def _mac(self, key: bytes, payload: bytes) -> str:
        return _b64(hmac.new(key, payload, hashlib.sha256).digest())

    def session_cookie(self, user_id: int, session_id: int, lifetime: int) -> str:
        """Return the signed value of a session cookie that lasts ``lifetime`` seconds."""
        expires = int(time.time()) + lifetime
        payload = json.dumps([1, user_id, session_id, expires], separators=(",", ":")).encode()
        return f"{_b64(payload)}.{self._mac(self._session_key, payload)}"

    def read_session(self, value: str | None) -> CookieSession | None:
        """Return what a session cookie says, or None when it is absent, forged or expired."""
        if not value or len(value) > 512:
            return None
        encoded, _, signature = value.partition(".")
        try:
            payload = _unb64(encoded)
        except (ValueError, TypeError):
            return None
        if not hmac.compare_digest(signature, self._mac(self._session_key, payload)):
            return None
        try:
            data: Any = json.loads(payload)
            version, user_id, session_id, expires = data
        except (ValueError, TypeError):
            return None
        if version != 1 or not all(type(item) is int for item in (user_id, session_id, expires)):
            return None
        if expires <= time.time():
            return None
        return CookieSession(user_id, session_id, expires)

    def csrf_token(self, binding: str) -> str:
        """Return the CSRF token of forms shown to the browser identified by ``binding``."""
        return self._mac(self._csrf_key, binding.encode("utf-8"))

    def check_csrf(self, binding: str | None, token: object) -> bool:
        """True when ``token`` is the CSRF token of ``binding``; False for anything else."""
        if not binding or not isinstance(token, str) or not token:
            return False
        return hmac.compare_digest(token, self.csrf_token(binding))


def new_csrf_seed() -> str:
    """Return the random value of a fresh anonymous CSRF cookie."""
    return secrets.token_urlsafe(24)


def is_https(request: Request) -> bool:
    """True when the page was requested over HTTPS (directly or as the proxy says)."""
    return request.url.scheme == "https"


def set_cookie(
    request: Request, response: Response, name: str, value: str, max_age: int | None
) -> None:
    """Set a cookie the way every cookie of the pages is set: HttpOnly, Lax, Secure on HTTPS."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="lax",
        secure=is_https(request),
    )


def delete_cookie(request: Request, response: Response, name: str) -> None:
    """Remove a cookie set by ``set_cookie``."""
    response.delete_cookie(name, path="/", httponly=True, samesite="lax", secure=is_https(request))


def safe_next(target: str | None, default: str = "/") -> str:
    """Return ``target`` when it is a path on this site, else ``default`` (no open redirect)."""
    if (
        not target
        or not target.startswith("/")
        or target.startswith("//")
        or "\\" in target
        or any(ord(char) < 32 for char in target)
    ):
        return default
    return target
