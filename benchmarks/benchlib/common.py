"""Standard-library-only pieces shared by the driver and the workers.

Everything here must import nothing but the standard library: this module is loaded inside
every contender's virtual environment.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

T = TypeVar("T")

#: Prefix of the single stdout line on which a worker reports its JSON result.
RESULT_PREFIX = "BENCH-RESULT "


@dataclass(frozen=True)
class Sizes:
    """How much work each workload does; the same sizes are given to every contender."""

    table_rows: int = 10_000
    point_selects: int = 20_000
    fetch_rows: int = 1_000
    fetch_repeats: int = 200
    inserts: int = 5_000
    many_rows: int = 1_000
    many_batches: int = 10
    concurrent_tasks: int = 64
    concurrent_selects: int = 20_000
    warmup: int = 200
    budget_s: float = 20.0

    @classmethod
    def quick(cls) -> Sizes:
        """Return the tiny sizes used by ``--quick`` smoke runs."""
        return cls(
            table_rows=2_000,
            point_selects=2_000,
            fetch_repeats=10,
            inserts=300,
            many_batches=2,
            concurrent_selects=2_000,
            warmup=50,
            budget_s=5.0,
        )

    def to_json(self) -> str:
        """Serialise the sizes for a worker's command line."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Sizes:
        """Parse sizes serialised by :meth:`to_json`."""
        data = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class Workload:
    """One workload: its id, its heading, and what one counted operation is."""

    key: str
    title: str
    unit: str


#: The workloads, in report order. Titles may use the fields of :class:`Sizes`.
WORKLOADS: tuple[Workload, ...] = (
    Workload(
        "a_point_select",
        "(a) point select by primary key, {point_selects:,} sequential calls "
        "(table of {table_rows:,} rows)",
        "selects/s",
    ),
    Workload(
        "b_fetch_rows",
        "(b) fetch {fetch_rows:,} rows x 5 columns, read every field ({fetch_repeats:,} times)",
        "rows/s",
    ),
    Workload(
        "c_insert",
        "(c) insert one row, autocommit, {inserts:,} sequential inserts",
        "inserts/s",
    ),
    Workload(
        "d_execute_many",
        "(d) execute_many of {many_rows:,} rows, {many_batches:,} batches",
        "rows/s",
    ),
    Workload(
        "e_concurrent",
        "(e) {concurrent_tasks} concurrent tasks doing {concurrent_selects:,} point selects "
        "in total",
        "selects/s",
    ),
)
WORKLOAD_KEYS: tuple[str, ...] = tuple(w.key for w in WORKLOADS)


# --------------------------------------------------------------------------------------------
# Data. Timestamps use SQLAlchemy's SQLite DateTime storage format so every library reads the
# same bytes: ``YYYY-MM-DD HH:MM:SS.ffffff``.
# --------------------------------------------------------------------------------------------

_EPOCH = datetime(2024, 1, 1, 12, 0, 0)


def timestamp(i: int) -> datetime:
    """Return the deterministic timestamp of row ``i``."""
    return _EPOCH + timedelta(seconds=i, microseconds=(i * 7919) % 1_000_000)


def sa_datetime_text(value: datetime) -> str:
    """Format ``value`` exactly as SQLAlchemy's SQLite ``DateTime`` type stores it."""
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")


@dataclass(frozen=True)
class RowData:
    """One row of the five benchmark columns, in both raw and typed form."""

    id: int
    name: str
    active: bool
    created_at: datetime
    score: float

    @property
    def created_at_text(self) -> str:
        """The timestamp as stored text."""
        return sa_datetime_text(self.created_at)

    def raw_tuple(self) -> tuple[str, bool, str, float]:
        """Insert parameters for raw qmark SQL (timestamp pre-formatted as text)."""
        return (self.name, self.active, self.created_at_text, self.score)

    def raw_dict(self) -> dict[str, Any]:
        """Insert parameters for raw ``:name`` SQL (timestamp pre-formatted as text)."""
        return {
            "name": self.name,
            "active": self.active,
            "created_at": self.created_at_text,
            "score": self.score,
        }

    def typed_tuple(self) -> tuple[str, bool, datetime, float]:
        """Insert parameters for a server driver's positional SQL (a ``datetime``)."""
        return (self.name, self.active, self.created_at, self.score)

    def typed_dict(self) -> dict[str, Any]:
        """Insert parameters for SQLAlchemy Core (a ``datetime`` the library must convert)."""
        return {
            "name": self.name,
            "active": self.active,
            "created_at": self.created_at,
            "score": self.score,
        }


def row_data(i: int) -> RowData:
    """Return the deterministic content of row ``i``."""
    return RowData(
        id=i,
        name=f"name-{i:08d}",
        active=i % 2 == 0,
        created_at=timestamp(i),
        score=i * 0.25 + 0.125,
    )


def point_ids(count: int, table_rows: int, seed: int) -> list[int]:
    """Return ``count`` primary keys in ``1..table_rows`` in a fixed pseudo-random order."""
    state = seed & 0xFFFFFFFF or 1
    out: list[int] = []
    for _ in range(count):
        # xorshift32: deterministic across Python versions, no ``random`` state involved.
        state ^= (state << 13) & 0xFFFFFFFF
        state ^= state >> 17
        state ^= (state << 5) & 0xFFFFFFFF
        out.append(state % table_rows + 1)
    return out


def split(items: Sequence[T], parts: int) -> list[Sequence[T]]:
    """Split ``items`` into ``parts`` contiguous slices whose sizes differ by at most one."""
    base, extra = divmod(len(items), parts)
    out: list[Sequence[T]] = []
    start = 0
    for index in range(parts):
        stop = start + base + (1 if index < extra else 0)
        out.append(items[start:stop])
        start = stop
    return out


@dataclass(frozen=True)
class Inputs:
    """The pre-built inputs of every workload, identical for all contenders."""

    point_ids: list[int]
    point_warmup: list[int]
    fetch_items: list[int]
    fetch_warmup: list[int]
    insert_rows: list[RowData]
    insert_warmup: list[RowData]
    many_rows: list[RowData]
    many_items: list[int]
    many_warmup: list[int]
    concurrent_ids: list[int]
    concurrent_warmup: list[int]

    @classmethod
    def build(cls, sizes: Sizes) -> Inputs:
        """Build the inputs for ``sizes``."""
        rows = sizes.table_rows
        first_insert = rows + 1
        return cls(
            point_ids=point_ids(sizes.point_selects, rows, seed=1),
            point_warmup=point_ids(sizes.warmup, rows, seed=2),
            fetch_items=list(range(sizes.fetch_repeats)),
            fetch_warmup=[0, 1],
            insert_rows=[row_data(first_insert + i) for i in range(sizes.inserts)],
            insert_warmup=[row_data(i + 1) for i in range(min(sizes.warmup, 50))],
            many_rows=[row_data(i + 1) for i in range(sizes.many_rows)],
            many_items=list(range(sizes.many_batches)),
            many_warmup=[0],
            concurrent_ids=point_ids(sizes.concurrent_selects, rows, seed=3),
            concurrent_warmup=point_ids(sizes.concurrent_tasks * 4, rows, seed=4),
        )


# --------------------------------------------------------------------------------------------
# SQL text shared by the raw-SQL contenders of SQLite. Column order matches the Core tables.
# --------------------------------------------------------------------------------------------

COLUMNS = "id, name, active, created_at, score"
INSERT_COLUMNS = "name, active, created_at, score"

SQLITE_DDL: tuple[str, ...] = tuple(
    f"CREATE TABLE {table} ("
    "id INTEGER NOT NULL PRIMARY KEY, "
    "name VARCHAR(64) NOT NULL, "
    "active BOOLEAN NOT NULL, "
    "created_at DATETIME NOT NULL, "
    "score FLOAT NOT NULL)"
    for table in ("items", "events", "bulk")
)


# --------------------------------------------------------------------------------------------
# Measurement.
# --------------------------------------------------------------------------------------------


@dataclass
class Bench:
    """Runs and records the measured workloads of one worker process."""

    sizes: Sizes
    workloads: frozenset[str]
    options: dict[str, str] = field(default_factory=dict)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    info: dict[str, str] = field(default_factory=dict)

    def wants(self, workload: str) -> bool:
        """Tell whether ``workload`` was selected for this run."""
        return workload in self.workloads

    async def measure(
        self,
        workload: str,
        variant: str,
        body: Callable[[Sequence[T]], Awaitable[object]],
        items: Sequence[T],
        *,
        warmup: Sequence[T] = (),
        per_item: int = 1,
        chunk: int = 250,
    ) -> None:
        """Time ``body`` over ``items`` in chunks and record operations per second.

        ``body`` receives a slice of ``items`` and must perform one operation per item (each
        item counting for ``per_item`` operations, e.g. rows). The loop over the items lives in
        ``body`` itself so that the harness adds no per-operation overhead. ``warmup`` items run
        first, untimed. Between chunks the time budget is checked: once ``Sizes.budget_s`` is
        exceeded the run stops early and the partial rate is recorded with ``capped``.
        """
        if not self.wants(workload):
            return
        key = f"{workload}/{variant}"
        try:
            if warmup:
                await body(warmup)
            gc.collect()
            done = 0
            budget = self.sizes.budget_s
            start = time.perf_counter()
            elapsed = 0.0
            for offset in range(0, len(items), chunk):
                part = items[offset : offset + chunk]
                await body(part)
                done += len(part)
                elapsed = time.perf_counter() - start
                if elapsed > budget and done < len(items):
                    break
            ops = done * per_item
            self.results[key] = {
                "ops": ops,
                "seconds": elapsed,
                "ops_per_s": ops / elapsed if elapsed > 0 else 0.0,
                "capped": done < len(items),
            }
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            self.results[key] = {"error": f"{type(exc).__name__}: {exc}"}

    async def measure_workloads(
        self,
        inputs: Inputs,
        *,
        point: Callable[[Sequence[int]], Awaitable[object]],
        fetch: Callable[[Sequence[int]], Awaitable[object]],
        insert: Callable[[Sequence[Any]], Awaitable[object]],
        insert_values: Callable[[RowData], Any],
        many: Callable[[Sequence[int]], Awaitable[object]],
        concurrent: Callable[[Sequence[int]], Awaitable[object]] | None,
        query_variant: str = "raw",
        fetch_variant: str = "by_index",
    ) -> None:
        """Measure workloads (a) to (e) once each, for a contender with one variant of each.

        ``insert`` gets the rows of ``inputs.insert_rows`` as ``insert_values`` makes them;
        ``many`` writes ``inputs.many_rows`` once per item; (e) is skipped when
        ``concurrent`` is ``None`` (a single held connection cannot serve concurrent tasks).
        """
        await self.measure_point(query_variant, point, inputs)
        await self.measure_fetch(fetch_variant, fetch, inputs)
        await self.measure_insert(query_variant, insert, inputs, insert_values)
        await self.measure_many(query_variant, many, inputs)
        if concurrent is not None:
            await self.measure_concurrent(query_variant, concurrent, inputs)

    # One method a workload: each knows its items, warm-up and unit of work, so that every
    # contender measures a workload the same way.

    async def measure_point(
        self, variant: str, point: Callable[[Sequence[int]], Awaitable[object]], inputs: Inputs
    ) -> None:
        """(a): one select per id of ``inputs.point_ids``."""
        await self.measure(
            "a_point_select", variant, point, inputs.point_ids, warmup=inputs.point_warmup
        )

    async def measure_fetch(
        self, variant: str, fetch: Callable[[Sequence[int]], Awaitable[object]], inputs: Inputs
    ) -> None:
        """(b): one fetch of ``sizes.fetch_rows`` rows per item, counted in rows."""
        await self.measure(
            "b_fetch_rows",
            variant,
            fetch,
            inputs.fetch_items,
            warmup=inputs.fetch_warmup,
            per_item=self.sizes.fetch_rows,
            chunk=1,
        )

    async def measure_insert(
        self,
        variant: str,
        insert: Callable[[Sequence[Any]], Awaitable[object]],
        inputs: Inputs,
        insert_values: Callable[[RowData], Any],
    ) -> None:
        """(c): one insert per row of ``inputs.insert_rows``, as ``insert_values`` makes it."""
        await self.measure(
            "c_insert",
            variant,
            insert,
            [insert_values(r) for r in inputs.insert_rows],
            warmup=[insert_values(r) for r in inputs.insert_warmup],
        )

    async def measure_many(
        self, variant: str, many: Callable[[Sequence[int]], Awaitable[object]], inputs: Inputs
    ) -> None:
        """(d): ``inputs.many_rows`` written once per item, counted in rows."""
        await self.measure(
            "d_execute_many",
            variant,
            many,
            inputs.many_items,
            warmup=inputs.many_warmup,
            per_item=len(inputs.many_rows),
            chunk=1,
        )

    async def measure_concurrent(
        self,
        variant: str,
        concurrent: Callable[[Sequence[int]], Awaitable[object]],
        inputs: Inputs,
    ) -> None:
        """(e): all of ``inputs.concurrent_ids`` in one call (it spreads them over tasks)."""
        await self.measure(
            "e_concurrent",
            variant,
            concurrent,
            inputs.concurrent_ids,
            warmup=inputs.concurrent_warmup,
            chunk=len(inputs.concurrent_ids),
        )

    def fail(self, variant_keys: Iterable[str], exc: BaseException) -> None:
        """Record ``exc`` as the error of every listed ``workload/variant`` not yet measured."""
        traceback.print_exception(exc, file=sys.stderr)
        for key in variant_keys:
            if key.split("/", 1)[0] in self.workloads and key not in self.results:
                self.results[key] = {"error": f"{type(exc).__name__}: {exc}"}


def emit_result(payload: dict[str, Any]) -> None:
    """Print the worker's result line on stdout."""
    sys.stdout.write(RESULT_PREFIX + json.dumps(payload) + "\n")
    sys.stdout.flush()


def read_sink(value: object) -> None:
    """Keep a value alive so reading it cannot be optimised away (it never is in CPython)."""
    _SINK[0] = value


_SINK: list[object] = [None]
