"""Registration, login, refresh, logout and password change; who the caller is.

Login failures are counted per account name (the SHA-256 of the lower-cased email, whether
an account has it or not), so that 429 cannot tell a known address from an unknown one.
An unknown email and a wrong password walk the same steps: a throttle check, a lookup, one
Argon2id verification (against a dummy hash when there is no account) and a counted failure,
and they get the same answer.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import aiodatabases

from .accounts import Account, AccountsRepository
from .errors import ForbiddenError, TooManyRequestsError, UnauthorizedError
from .passwords import Passwords
from .schemas import TokenPair, User, normalize_email
from .settings import Settings
from .tokens import KeyRing, hash_refresh_token, new_refresh_token

__all__ = ["Auth", "Caller"]

logger = logging.getLogger("notes.auth")

Clock = Callable[[], dt.datetime]

#: The one answer to a failed login, whatever failed.
BAD_LOGIN = "the email address or the password is wrong"


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated user of a request, and the login session of their token."""

    user: User
    session_id: int


def _email_key(email: str) -> str:
    return hashlib.sha256(normalize_email(email).encode("utf-8", "surrogatepass")).hexdigest()


class Auth:
    """The account operations of one application; shared by all its requests.

    Args:
        settings: Token lifetimes, Argon2id cost, login throttling.
        keys: Signs and verifies access tokens.
        passwords: Hashes and verifies passwords.
        clock: The current time (aware, UTC).
    """

    def __init__(
        self, settings: Settings, keys: KeyRing, passwords: Passwords, clock: Clock
    ) -> None:
        self.keys = keys
        self.passwords = passwords
        self._clock = clock
        self._refresh_lifetime = dt.timedelta(seconds=settings.refresh_token_seconds)
        self._max_failures = settings.login_max_failures
        self._window = dt.timedelta(seconds=settings.login_window_seconds)

    @classmethod
    def from_settings(cls, settings: Settings, clock: Clock) -> Auth:
        """Build the account operations of an application from its settings."""
        return cls(settings, KeyRing.from_settings(settings), Passwords(settings), clock)

    async def register(self, database: aiodatabases.Database, email: str, password: str) -> User:
        """Create an account.

        Raises:
            ConflictError: The email address has an account already.
        """
        password_hash = await self.passwords.hash(password)
        account = await AccountsRepository(database).create_user(
            normalize_email(email), password_hash, self._clock()
        )
        logger.info("registered user %d", account.id)
        return account.public()

    async def login(self, database: aiodatabases.Database, email: str, password: str) -> TokenPair:
        """Check an email and password; open a session and return its tokens.

        Raises:
            UnauthorizedError: The email has no account or the password is wrong (one answer).
            TooManyRequestsError: This account name failed too often in the window.
        """
        accounts = AccountsRepository(database)
        key = _email_key(email)
        await self._count_attempt(accounts, key)
        account = await accounts.find_by_email(normalize_email(email))
        stored = account.password_hash if account is not None else None
        # Verified first, always: without an account it runs against a dummy hash, so that
        # an unknown email takes as long as a wrong password.
        matched = await self.passwords.verify(stored, password)
        if account is None or not matched:
            raise UnauthorizedError(BAD_LOGIN)
        await accounts.clear_failures(key)
        if self.passwords.needs_rehash(account.password_hash):
            await accounts.set_password_hash(account.id, await self.passwords.hash(password))
            logger.info("rehashed the password of user %d with current parameters", account.id)
        return await self._open_session(accounts, account)

    async def _count_attempt(self, accounts: AccountsRepository, key: str) -> None:
        """Count an attempt before checking it, and refuse it past the limit.

        Counted first, so that concurrent attempts cannot all slip under the limit before
        any of them is recorded; a success clears the count.
        """
        now = self._clock()
        since = now - self._window
        await accounts.count_attempt(key, now, since)
        attempts, started = await accounts.attempts(key, since)
        if started is not None and attempts > self._max_failures:
            wait = (started + self._window - now).total_seconds()
            raise TooManyRequestsError(
                "too many failed logins for this account; try again later",
                retry_after=math.ceil(wait),
            )

    async def _open_session(self, accounts: AccountsRepository, account: Account) -> TokenPair:
        now = self._clock()
        refresh = new_refresh_token()
        session_id = await accounts.open_session(
            account.id, hash_refresh_token(refresh), now, now + self._refresh_lifetime
        )
        logger.info("user %d logged in (session %d)", account.id, session_id)
        return self._pair(account.id, session_id, refresh, now)

    def _pair(self, user_id: int, session_id: int, refresh: str, now: dt.datetime) -> TokenPair:
        return TokenPair(
            access_token=self.keys.issue(user_id, session_id, now),
            expires_in=self.keys.lifetime,
            refresh_token=refresh,
        )

    async def refresh(self, database: aiodatabases.Database, token: str) -> TokenPair:
        """Rotate a refresh token: the old one is spent, a new pair comes back.

        Raises:
            UnauthorizedError: The token is unknown, expired, revoked, or was used before
                (which also ends its session).
        """
        now = self._clock()
        refresh = new_refresh_token()
        outcome = await AccountsRepository(database).rotate(
            hash_refresh_token(token),
            hash_refresh_token(refresh),
            now,
            now + self._refresh_lifetime,
        )
        if outcome.status != "ok":
            if outcome.status == "reused":
                logger.warning(
                    "a used refresh token came back: session %d of user %d revoked",
                    outcome.session_id,
                    outcome.user_id,
                )
            raise UnauthorizedError("the refresh token is not valid; log in again")
        return self._pair(outcome.user_id, outcome.session_id, refresh, now)

    async def authenticate(self, database: aiodatabases.Database, token: str) -> Caller:
        """Return the caller an access token stands for.

        Raises:
            UnauthorizedError: The token is not valid, its session ended, or its user is gone.
        """
        claims = self.keys.verify(token)
        account = await AccountsRepository(database).in_session(claims.user_id, claims.session_id)
        if account is None:
            raise UnauthorizedError(
                "the access token is not valid; log in again", invalid_token=True
            )
        return Caller(account.public(), claims.session_id)

    async def logout(self, database: aiodatabases.Database, caller: Caller) -> None:
        """End the caller's session: its access and refresh tokens stop working."""
        await AccountsRepository(database).revoke_session(caller.session_id, self._clock())
        logger.info("user %d logged out (session %d)", caller.user.id, caller.session_id)

    async def change_password(
        self, database: aiodatabases.Database, caller: Caller, current: str, new: str
    ) -> None:
        """Replace the caller's password and end their other sessions.

        Raises:
            ForbiddenError: The current password is wrong (counted as a failed login).
            TooManyRequestsError: This account failed too often in the window.
        """
        accounts = AccountsRepository(database)
        key = _email_key(caller.user.email)
        await self._count_attempt(accounts, key)
        account = await accounts.find_by_email(caller.user.email)
        stored = account.password_hash if account is not None else None
        matched = await self.passwords.verify(stored, current)
        if account is None or not matched:
            raise ForbiddenError("the current password is wrong")
        await accounts.clear_failures(key)
        await accounts.set_password_hash(account.id, await self.passwords.hash(new))
        await accounts.revoke_other_sessions(account.id, caller.session_id, self._clock())
        logger.info("user %d changed their password", account.id)
