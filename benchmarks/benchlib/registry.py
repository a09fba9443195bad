"""The contender registry: which libraries each backend benchmarks, in which environments.

To add a backend (PostgreSQL, MariaDB), write a ``benchlib.<backend>`` package with a
``prepare(workdir, sizes, options)`` function and one module per contender exposing
``async def run(bench, target)``, then add a :class:`Backend` entry to :data:`BACKENDS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: Pinned versions of the contenders' packages.
AIOSQLITE = "0.22.1"
SQLALCHEMY = "2.1.9"
DATABASES = "0.9.0"


@dataclass(frozen=True)
class EnvSpec:
    """A virtual environment under ``benchmarks/.envs/<name>`` and what to install in it.

    ``requirements`` are pip requirement strings; ``editable`` are paths relative to the
    repository root (extras allowed, e.g. ``.[sqlite]``) installed with ``pip install -e``.
    An environment with neither is created without pip.
    """

    name: str
    requirements: tuple[str, ...] = ()
    editable: tuple[str, ...] = ()


@dataclass(frozen=True)
class Contender:
    """One library under test: where it runs, which module drives it, and its options."""

    key: str
    label: str
    env: EnvSpec
    module: str
    packages: tuple[str, ...] = ()
    options: tuple[tuple[str, str], ...] = ()
    note: str = ""


@dataclass(frozen=True)
class Target:
    """A performance goal: ``subject/variant >= minimum x other/other_variant`` on a workload."""

    workload: str
    variant: str
    other: str
    other_variant: str
    minimum: float


@dataclass(frozen=True)
class Backend:
    """The contenders, baseline and targets of one database backend."""

    name: str
    title: str
    subject: str
    baseline: str
    contenders: tuple[Contender, ...]
    targets: tuple[Target, ...] = ()
    notes: tuple[str, ...] = field(default=())

    def contender(self, key: str) -> Contender:
        """Return the contender registered under ``key``."""
        for contender in self.contenders:
            if contender.key == key:
                return contender
        raise KeyError(key)


_SQLITE_URL = "sqlite:///{path}"

SQLITE = Backend(
    name="sqlite",
    title="SQLite (file database)",
    subject="aiodatabases",
    baseline="aiosqlite",
    contenders=(
        Contender(
            key="aiodatabases",
            label="aiodatabases (this repository)",
            env=EnvSpec(
                "aiodatabases",
                requirements=(f"sqlalchemy=={SQLALCHEMY}",),
                editable=(".[sqlite]",),
            ),
            module="benchlib.sqlite.databases_api",
            packages=("aiodatabases", "sqlalchemy"),
            options=(
                ("lib", "aiodatabases"),
                ("url", _SQLITE_URL),
                ("attr", "1"),
                ("synchronous_via_url", "1"),
            ),
        ),
        Contender(
            key="databases",
            label=f"databases {DATABASES}",
            env=EnvSpec(
                "databases",
                requirements=(
                    f"databases[aiosqlite]=={DATABASES}",
                    f"aiosqlite=={AIOSQLITE}",
                    f"sqlalchemy=={SQLALCHEMY}",
                ),
            ),
            module="benchlib.sqlite.databases_api",
            packages=("databases", "aiosqlite", "sqlalchemy"),
            options=(("lib", "databases"), ("url", _SQLITE_URL), ("attr", "0")),
        ),
        Contender(
            key="sqlalchemy",
            label=f"SQLAlchemy {SQLALCHEMY} async Core",
            env=EnvSpec(
                "sqlalchemy",
                requirements=(f"sqlalchemy[asyncio]=={SQLALCHEMY}", f"aiosqlite=={AIOSQLITE}"),
            ),
            module="benchlib.sqlite.sqlalchemy_async",
            packages=("sqlalchemy", "aiosqlite", "greenlet"),
        ),
        Contender(
            key="aiosqlite",
            label=f"aiosqlite {AIOSQLITE}",
            env=EnvSpec("aiosqlite", requirements=(f"aiosqlite=={AIOSQLITE}",)),
            module="benchlib.sqlite.raw_aiosqlite",
            packages=("aiosqlite",),
        ),
        Contender(
            key="sqlite3",
            label="sqlite3 (stdlib, sync)",
            env=EnvSpec("stdlib"),
            module="benchlib.sqlite.stdlib_sqlite3",
        ),
    ),
    targets=(
        Target("a_point_select", "raw", "aiosqlite", "raw", 2.0),
        Target("a_point_select", "core", "aiosqlite", "raw", 1.2),
        Target("a_point_select", "core", "databases", "core", 10.0),
        Target("b_fetch_rows", "by_name", "sqlite3", "by_index", 0.8),
        Target("b_fetch_rows", "by_attr", "sqlite3", "by_index", 0.8),
        Target("c_insert", "raw", "databases", "raw", 10.0),
        Target("c_insert", "core", "databases", "core", 10.0),
        Target("c_insert", "raw", "aiosqlite", "raw", 1.5),
        Target("c_insert", "core", "aiosqlite", "raw", 1.5),
        Target("d_execute_many", "raw", "sqlite3", "raw", 0.8),
        Target("d_execute_many", "core", "sqlite3", "raw", 0.8),
    ),
)

#: Every backend the driver knows, by name.
BACKENDS: dict[str, Backend] = {SQLITE.name: SQLITE}
