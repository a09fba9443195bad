"""Accounts in the database: users, login sessions, refresh tokens, failed logins.

With ``repository.py``, the only modules that write SQL. Like it, every write that must be
all or nothing is one transaction.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

import sqlalchemy as sa

import aiodatabases

from .errors import ConflictError
from .schemas import User
from .tables import auth_sessions, login_failures, note_tags, notes, refresh_tokens, users

__all__ = ["Account", "AccountsRepository", "RefreshOutcome"]


@dataclass(frozen=True, slots=True)
class Account:
    """A user with the hash of their password: never leaves the service."""

    id: int
    email: str
    password_hash: str
    created_at: dt.datetime

    def public(self) -> User:
        """The account as its owner may see it."""
        return User(id=self.id, email=self.email, created_at=self.created_at)


@dataclass(frozen=True, slots=True)
class RefreshOutcome:
    """What became of a refresh token handed in."""

    status: Literal["ok", "unknown", "expired", "reused", "revoked"]
    user_id: int = 0
    session_id: int = 0


#: The user of a live session; run on every authenticated request, so built once: a statement
#: object keeps its compiled form and cache key, where one built per call is made afresh.
_IN_SESSION = (
    sa.select(users)
    .join(auth_sessions, auth_sessions.c.user_id == users.c.id)
    .where(
        users.c.id == sa.bindparam("user_id"),
        auth_sessions.c.id == sa.bindparam("session_id"),
        auth_sessions.c.revoked_at.is_(None),
    )
)

#: Whether a session is live and its user's: all a request on the notes needs of its token.
_LIVE_SESSION = sa.select(auth_sessions.c.id).where(
    auth_sessions.c.id == sa.bindparam("session_id"),
    auth_sessions.c.user_id == sa.bindparam("user_id"),
    auth_sessions.c.revoked_at.is_(None),
)


def _account(row: aiodatabases.Record) -> Account:
    return Account(
        id=row["id"],
        email=row["email"],
        password_hash=row["password_hash"],
        created_at=row["created_at"],
    )


class AccountsRepository:
    """Reads and writes accounts through one ``Database``; safe to share between tasks."""

    def __init__(self, database: aiodatabases.Database) -> None:
        self._database = database

    # -- users ------------------------------------------------------------------------------

    async def create_user(self, email: str, password_hash: str, now: dt.datetime) -> Account:
        """Store a new user.

        Raises:
            ConflictError: The email address has an account already.
        """
        try:
            async with self._database.transaction():
                user_id = await self._database.execute(
                    users.insert().values(email=email, password_hash=password_hash, created_at=now)
                )
        except aiodatabases.IntegrityError:
            raise ConflictError("an account with this email address exists already") from None
        return Account(id=user_id, email=email, password_hash=password_hash, created_at=now)

    async def find_by_email(self, email: str) -> Account | None:
        """Return the account of an (already normalized) email address, if any."""
        row = await self._database.fetch_one(sa.select(users).where(users.c.email == email))
        return _account(row) if row is not None else None

    async def in_session(self, user_id: int, session_id: int) -> Account | None:
        """Return the user if the session is theirs and not revoked, else None."""
        row = await self._database.fetch_one(
            _IN_SESSION, {"user_id": user_id, "session_id": session_id}
        )
        return _account(row) if row is not None else None

    async def session_is_live(self, user_id: int, session_id: int) -> bool:
        """Whether the session is the user's and not revoked (then the user exists).

        Cheaper than ``in_session``: one row of one table, no account to build. A user's
        sessions go with the user (``delete_user``, and the foreign key cascades).
        """
        found = await self._database.fetch_val(
            _LIVE_SESSION, {"user_id": user_id, "session_id": session_id}
        )
        return found is not None

    async def set_password_hash(self, user_id: int, password_hash: str) -> None:
        """Store a new hash of a user's password."""
        await self._database.execute(
            users.update().where(users.c.id == user_id).values(password_hash=password_hash)
        )

    async def delete_user(self, user_id: int) -> None:
        """Delete a user with their notes, tags and sessions (cascades, spelled out)."""
        owned = sa.select(notes.c.id).where(notes.c.owner_id == user_id).scalar_subquery()
        sessions = (
            sa.select(auth_sessions.c.id).where(auth_sessions.c.user_id == user_id)
        ).scalar_subquery()
        async with self._database.transaction():
            await self._database.execute(note_tags.delete().where(note_tags.c.note_id.in_(owned)))
            await self._database.execute(notes.delete().where(notes.c.owner_id == user_id))
            await self._database.execute(
                refresh_tokens.delete().where(refresh_tokens.c.session_id.in_(sessions))
            )
            await self._database.execute(
                auth_sessions.delete().where(auth_sessions.c.user_id == user_id)
            )
            await self._database.execute(users.delete().where(users.c.id == user_id))

    async def adopt_orphans(self, user_id: int) -> int:
        """Give every note without an owner (older than accounts) to a user; return how many."""
        count: int = await self._database.execute(
            notes.update().where(notes.c.owner_id.is_(None)).values(owner_id=user_id)
        )
        return count

    # -- sessions and refresh tokens --------------------------------------------------------

    async def open_session(
        self, user_id: int, token_hash: str, now: dt.datetime, expires_at: dt.datetime
    ) -> int:
        """Start a login session with its first refresh token; return the session's id."""
        async with self._database.transaction():
            session_id: int = await self._database.execute(
                auth_sessions.insert().values(user_id=user_id, created_at=now)
            )
            await self._database.execute(
                refresh_tokens.insert().values(
                    token_hash=token_hash, session_id=session_id, expires_at=expires_at
                )
            )
        return session_id

    async def rotate(
        self, token_hash: str, new_hash: str, now: dt.datetime, expires_at: dt.datetime
    ) -> RefreshOutcome:
        """Trade a refresh token for a new one of the same session, exactly once.

        A token used before comes back as ``reused`` and its whole session is revoked, so
        that a stolen token and its rotated successors all stop working.
        """
        async with self._database.transaction():
            row = await self._database.fetch_one(
                sa.select(
                    refresh_tokens.c.session_id,
                    refresh_tokens.c.expires_at,
                    refresh_tokens.c.used_at,
                    auth_sessions.c.user_id,
                    auth_sessions.c.revoked_at,
                )
                .join(auth_sessions, auth_sessions.c.id == refresh_tokens.c.session_id)
                .where(refresh_tokens.c.token_hash == token_hash)
            )
            if row is None:
                return RefreshOutcome("unknown")
            session_id, user_id = row["session_id"], row["user_id"]
            if row["revoked_at"] is not None:
                return RefreshOutcome("revoked", user_id, session_id)
            if row["used_at"] is not None:
                await self._revoke(session_id, now)
                return RefreshOutcome("reused", user_id, session_id)
            if row["expires_at"] <= now:
                return RefreshOutcome("expired", user_id, session_id)
            # Of concurrent uses, only the first marks it; the others are reuses.
            marked = await self._database.execute(
                refresh_tokens.update()
                .where(
                    refresh_tokens.c.token_hash == token_hash, refresh_tokens.c.used_at.is_(None)
                )
                .values(used_at=now)
            )
            if not marked:
                await self._revoke(session_id, now)
                return RefreshOutcome("reused", user_id, session_id)
            await self._database.execute(
                refresh_tokens.insert().values(
                    token_hash=new_hash, session_id=session_id, expires_at=expires_at
                )
            )
        return RefreshOutcome("ok", user_id, session_id)

    async def revoke_session(self, session_id: int, now: dt.datetime) -> None:
        """End a login session: its access and refresh tokens stop working."""
        await self._revoke(session_id, now)

    async def _revoke(self, session_id: int, now: dt.datetime) -> None:
        await self._database.execute(
            auth_sessions.update()
            .where(auth_sessions.c.id == session_id, auth_sessions.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )

    async def revoke_other_sessions(self, user_id: int, keep: int, now: dt.datetime) -> None:
        """End every session of a user but one (after a password change)."""
        await self._database.execute(
            auth_sessions.update()
            .where(
                auth_sessions.c.user_id == user_id,
                auth_sessions.c.id != keep,
                auth_sessions.c.revoked_at.is_(None),
            )
            .values(revoked_at=now)
        )

    # -- failed logins ----------------------------------------------------------------------

    async def attempts(self, email_hash: str, since: dt.datetime) -> tuple[int, dt.datetime | None]:
        """Return the login attempts of an account name, and when its window began after since."""
        row = await self._database.fetch_one(
            sa.select(login_failures.c.failures, login_failures.c.window_started_at).where(
                login_failures.c.email_hash == email_hash,
                login_failures.c.window_started_at > since,
            )
        )
        if row is None:
            return 0, None
        return row["failures"], row["window_started_at"]

    async def count_attempt(self, email_hash: str, now: dt.datetime, since: dt.datetime) -> None:
        """Count one login attempt against an account name.

        A window that began before since starts again at now. Counting is one atomic
        ``UPDATE ... SET failures = failures + 1``, so concurrent attempts all count.
        """
        key = login_failures.c.email_hash == email_hash
        bump = (
            login_failures.update()
            .where(key, login_failures.c.window_started_at > since)
            .values(failures=login_failures.c.failures + 1)
        )
        restart = (
            login_failures.update()
            .where(key, login_failures.c.window_started_at <= since)
            .values(failures=1, window_started_at=now)
        )
        start = login_failures.insert().values(
            email_hash=email_hash, failures=1, window_started_at=now
        )
        # Single-row statements, each atomic on its own: no transaction spans them, so that
        # concurrent attempts never hold locks against each other for long. A statement that
        # loses a race (a duplicate key, a deadlock) is followed by the next round.
        for _ in range(5):
            try:
                if await self._database.execute(bump) or await self._database.execute(restart):
                    return
                await self._database.execute(start)
                return
            except aiodatabases.IntegrityError:
                continue  # another request started the window meanwhile: count in it
            except aiodatabases.DatabaseError as exc:
                if not exc.retryable:
                    raise
        raise aiodatabases.OperationalError(
            "count_attempt(): the attempt could not be counted after 5 rounds of contention"
        )

    async def clear_failures(self, email_hash: str) -> None:
        """Forget the attempts of an account name (after a successful login)."""
        await self._database.execute(
            login_failures.delete().where(login_failures.c.email_hash == email_hash)
        )
