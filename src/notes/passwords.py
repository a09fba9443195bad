"""Password hashing with Argon2id, off the event loop.

Hashing costs tens of milliseconds of CPU and about 19 MiB of memory on purpose; it runs in a
worker thread so that other requests keep being served meanwhile, and a semaphore bounds how
many hashes run at once (each holds its memory for its whole run).
"""

from __future__ import annotations

import asyncio
import secrets

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from .settings import ARGON2_MIN_MEMORY_KIB, ARGON2_MIN_TIME_COST, Settings

__all__ = ["Passwords"]

#: Hashes computed at the same time, at most (each one holds argon2_memory_kib of memory).
MAX_CONCURRENT_HASHES = 4


def _encode(password: str) -> bytes:
    # JSON may carry a lone surrogate; it is still a character the user typed.
    return password.encode("utf-8", "surrogatepass")


class Passwords:
    """Hash and verify passwords with Argon2id at the configured cost; shared by all tasks.

    Args:
        settings: Gives the memory (KiB), time cost and parallelism; never below OWASP's
            floor (19456 KiB, 2, 1).
    """

    def __init__(self, settings: Settings) -> None:
        if (
            settings.argon2_memory_kib < ARGON2_MIN_MEMORY_KIB
            or settings.argon2_time_cost < ARGON2_MIN_TIME_COST
        ):  # settings validate this already; a hasher built otherwise must not be weaker
            raise ValueError("Argon2id parameters below m=19456 KiB, t=2 are refused")
        self._hasher = argon2.PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
            type=argon2.Type.ID,
        )
        self._limit = asyncio.Semaphore(MAX_CONCURRENT_HASHES)
        # Verified against when the account does not exist, so that an unknown email costs
        # the same time as a wrong password. Its password is random and forgotten.
        self._dummy = self._hasher.hash(secrets.token_urlsafe(32))

    async def hash(self, password: str) -> str:
        """Return the encoded Argon2id hash of a password (``$argon2id$v=19$m=...``)."""
        async with self._limit:
            return await asyncio.to_thread(self._hasher.hash, _encode(password))

    async def verify(self, stored: str | None, password: str) -> bool:
        """Return whether password matches the stored hash; None costs the same and fails."""
        encoded = stored if stored is not None else self._dummy
        async with self._limit:
            matched = await asyncio.to_thread(self._verify, encoded, _encode(password))
        return matched and stored is not None

    def _verify(self, encoded: str, password: bytes) -> bool:
        try:
            return self._hasher.verify(encoded, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored: str) -> bool:
        """True when a stored hash was made with other (older, weaker) parameters."""
        try:
            return self._hasher.check_needs_rehash(stored)
        except InvalidHashError:
            return True
