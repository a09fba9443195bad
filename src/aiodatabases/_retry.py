"""Run a whole transaction again when the server asks for it: serialization failures, deadlocks."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from .exceptions import ConfigurationError, DatabaseError

if TYPE_CHECKING:
    from ._connection import Connection
    from ._database import Database

__all__ = ["run_in_transaction"]

T = TypeVar("T")

logger = logging.getLogger("aiodatabases")


def check_retry_options(attempts: int, backoff: float, max_backoff: float) -> None:
    """Refuse retry settings that cannot work, before anything runs.

    Raises:
        ConfigurationError: ``attempts`` is below 1 or a delay is negative.
    """
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
        raise ConfigurationError(
            f"run_in_transaction(): attempts must be an integer >= 1, not {attempts!r}"
        )
    if backoff < 0 or max_backoff < 0:
        raise ConfigurationError(
            "run_in_transaction(): backoff and max_backoff must not be negative, "
            f"not {backoff!r} and {max_backoff!r}"
        )


async def run_in_transaction(
    database: Database,
    func: Callable[[Connection], Awaitable[T]],
    *,
    attempts: int,
    backoff: float,
    max_backoff: float,
    options: dict[str, Any],
) -> T:
    """Run ``func`` in a transaction, again from the start while the error is retryable.

    The delay before attempt ``n + 1`` is drawn uniformly from ``[0, min(max_backoff,
    backoff * 2**n)]`` ("full jitter"), so tasks that collided once do not collide again in
    lockstep. Inside a transaction that is already open on this task (or under
    ``force_rollback``), ``func`` runs once in a savepoint and a retryable error propagates:
    only the outermost transaction can be run again, because the server rolled back (or
    doomed) all of it.
    """
    check_retry_options(attempts, backoff, max_backoff)
    if database._in_transaction():
        connection = database.connection()
        async with connection.transaction(**options):
            return await func(connection)
    attempt = 0
    while True:
        attempt += 1
        try:
            async with (
                database.connection() as connection,
                connection.transaction(**options),
            ):
                return await func(connection)
        except DatabaseError as exc:
            if not exc.retryable or attempt >= attempts:
                raise
            ceiling = min(max_backoff, backoff * (2 ** (attempt - 1)))
            delay = random.uniform(0.0, ceiling)
            logger.info(
                "run_in_transaction: attempt %d of %d failed with a retryable error "
                "(sqlstate %s); running it again in %.3f s",
                attempt,
                attempts,
                exc.sqlstate,
                delay,
            )
            await asyncio.sleep(delay)
