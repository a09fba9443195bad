"""Group commit: the writes that several tasks make at once, run as one unit of work.

A backend whose single-statement writes each pay for a commit of their own (SQLite's WAL
frames, PostgreSQL's round trip and log flush) lets them share one instead. A write made with
no connection held (``Database.execute``), outside any transaction, joins a group when
another task has written in the same turn of the event loop, or did in the last one while the
load lasts; the group runs in the next turn, and each caller gets its own statement's outcome
once the group has committed. A lone writer never waits for a group. How a group runs, and
what happens when it fails, is the backend's (``WriteGroups.run_members``); a member it left
without an outcome runs alone, as it would have without grouping.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from asyncio import current_task
from collections.abc import Sequence
from typing import Any

from .._compiler import CompiledQuery, Kind

__all__ = ["ALONE", "GROUPABLE", "Member", "WriteGroups"]

#: A member's result when its statement must run on its own after all.
ALONE: Any = object()

#: The kinds of statement a group may take: writes, whose outcome is theirs alone.
GROUPABLE = frozenset({Kind.INSERT, Kind.UPDATE, Kind.DELETE})


class Member:
    """One statement waiting in a group, and the future its caller awaits."""

    __slots__ = ("args", "entry", "future", "sql")

    def __init__(
        self, future: asyncio.Future[Any], entry: CompiledQuery, sql: str, args: Sequence[Any]
    ) -> None:
        self.future = future
        self.entry = entry
        self.sql = sql
        self.args = args


class WriteGroups(ABC):
    """Gathers the writes of one turn of the loop and runs them in the next."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._members: list[Member] = []
        self._flushes: set[asyncio.Task[None]] = set()
        # The turn of the loop being watched: the first task that wrote in it, and whether
        # another one did too; ``_busy``: whether the last watched turn had two writers.
        self._watching = False
        self._first: asyncio.Task[Any] | None = None
        self._crowded = False
        self._busy = False

    def wanted(self) -> bool:
        """Whether the current task's write should join a group (counts it as a write)."""
        if self._members:
            return True
        task = current_task()
        if task is self._first:
            return False  # the same task again in this turn: a lone writer
        if not self._watching:
            self._watching = True
            self._first = task
            self._crowded = False
            self._loop = loop = asyncio.get_running_loop()
            loop.call_soon(self._end_turn)
            return self._busy
        self._crowded = True
        return True

    def _end_turn(self) -> None:
        self._watching = False
        self._first = None
        self._busy = self._crowded

    async def run(self, entry: CompiledQuery, sql: str, args: Sequence[Any]) -> Any:
        """Wait for the group; return what ``run_members`` gave this statement, or ``ALONE``.

        Raises:
            Exception: What ``run_members`` set for this statement (an outcome nobody knows).
        """
        loop = self._loop or asyncio.get_running_loop()
        member = Member(loop.create_future(), entry, sql, args)
        if not self._members:
            flush = loop.create_task(self._flush())
            self._flushes.add(flush)
            flush.add_done_callback(self._flushes.discard)
        self._members.append(member)
        return await member.future

    async def _flush(self) -> None:
        # Runs in the loop's next turn: every member of this turn has joined by now.
        members, self._members = self._members, []
        try:
            await self.run_members(members)
        except Exception:  # every member left without an outcome runs alone, meeting it itself
            pass
        finally:
            for member in members:
                if not member.future.done():
                    member.future.set_result(ALONE)

    @abstractmethod
    async def run_members(self, members: list[Member]) -> None:
        """Run the group; set each member's future to its outcome once committed (or to an
        exception when its outcome cannot be known), leave it unset to have it run alone.
        A member whose future is already done (its caller was cancelled) must be left out."""
