"""The contender registry: which libraries each backend benchmarks, in which environments.

To add a backend, write a ``benchlib.<backend>`` package with a ``prepare(workdir, sizes,
options)`` function (and ``cleanup(target)`` for a server database) and one module per
contender exposing ``async def run(bench, target)``, then add a :class:`Backend` entry to
:data:`BACKENDS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: Pinned versions of the contenders' packages.
AIOSQLITE = "0.22.1"
SQLALCHEMY = "2.1.9"
DATABASES = "0.9.0"
ASYNCPG = "0.32.0"
PSYCOPG = "3.3.9"
PSYCOPG_POOL = "3.3.3"
ASYNCMY = "0.2.18"


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
        Target("b_fetch_rows", "raw_by_name", "sqlite3", "by_index", 0.8),
        Target("c_insert", "raw", "databases", "raw", 10.0),
        Target("c_insert", "core", "databases", "core", 10.0),
        Target("c_insert", "raw", "aiosqlite", "raw", 1.5),
        Target("c_insert", "core", "aiosqlite", "raw", 1.5),
        Target("d_execute_many", "raw", "sqlite3", "raw", 0.8),
        Target("d_execute_many", "core", "sqlite3", "raw", 0.8),
    ),
)

_DATABASES_API = "benchlib.servers.databases_api"
_SQLALCHEMY_API = "benchlib.servers.sqlalchemy_async"

POSTGRESQL = Backend(
    name="postgresql",
    title="PostgreSQL",
    subject="aiodatabases",
    baseline="asyncpg",
    contenders=(
        Contender(
            key="aiodatabases",
            label="aiodatabases (this repository)",
            env=EnvSpec(
                "aiodatabases-postgresql",
                requirements=(f"sqlalchemy=={SQLALCHEMY}", f"asyncpg=={ASYNCPG}"),
                editable=(".[postgresql]",),
            ),
            module=_DATABASES_API,
            packages=("aiodatabases", "sqlalchemy", "asyncpg"),
            options=(
                ("lib", "aiodatabases"),
                ("scheme", "postgresql"),
                ("attr", "1"),
                ("conn", "1"),
            ),
        ),
        Contender(
            key="databases",
            label=f"databases {DATABASES}",
            env=EnvSpec(
                "databases-postgresql",
                requirements=(
                    f"databases[asyncpg]=={DATABASES}",
                    f"asyncpg=={ASYNCPG}",
                    f"sqlalchemy=={SQLALCHEMY}",
                ),
            ),
            module=_DATABASES_API,
            packages=("databases", "asyncpg", "sqlalchemy"),
            options=(("lib", "databases"), ("scheme", "postgresql+asyncpg"), ("attr", "0")),
        ),
        Contender(
            key="sqlalchemy",
            label=f"SQLAlchemy {SQLALCHEMY} async Core",
            env=EnvSpec(
                "sqlalchemy-postgresql",
                requirements=(f"sqlalchemy[asyncio]=={SQLALCHEMY}", f"asyncpg=={ASYNCPG}"),
            ),
            module=_SQLALCHEMY_API,
            packages=("sqlalchemy", "asyncpg", "greenlet"),
            options=(("scheme", "postgresql+asyncpg"),),
        ),
        Contender(
            key="psycopg",
            label=f"psycopg {PSYCOPG} async pool",
            env=EnvSpec(
                "psycopg",
                requirements=(
                    f"psycopg[binary,pool]=={PSYCOPG}",
                    f"psycopg-binary=={PSYCOPG}",
                    f"psycopg-pool=={PSYCOPG_POOL}",
                ),
            ),
            module="benchlib.postgresql.psycopg_pool",
            packages=("psycopg", "psycopg-binary", "psycopg-pool"),
        ),
        Contender(
            key="asyncpg_pool",
            label=f"asyncpg {ASYNCPG} pool",
            env=EnvSpec("asyncpg", requirements=(f"asyncpg=={ASYNCPG}",)),
            module="benchlib.postgresql.raw_asyncpg",
            packages=("asyncpg",),
            options=(("mode", "pool"),),
        ),
        Contender(
            key="asyncpg",
            label=f"asyncpg {ASYNCPG} held connection",
            env=EnvSpec("asyncpg", requirements=(f"asyncpg=={ASYNCPG}",)),
            module="benchlib.postgresql.raw_asyncpg",
            packages=("asyncpg",),
            options=(("mode", "held"),),
        ),
    ),
    targets=(
        Target("a_point_select", "raw", "asyncpg", "raw", 0.6),
        Target("a_point_select", "core", "databases", "core", 4.0),
        Target("a_point_select", "core", "sqlalchemy", "core", 2.0),
        Target("a_point_select", "conn_raw", "asyncpg", "raw", 0.8),
        Target("b_fetch_rows", "by_name", "asyncpg", "by_index", 0.8),
        Target("b_fetch_rows", "by_attr", "asyncpg", "by_index", 0.8),
        Target("b_fetch_rows", "raw_by_name", "asyncpg", "by_index", 0.8),
        Target("c_insert", "raw", "asyncpg", "raw", 0.6),
        Target("c_insert", "core", "asyncpg", "raw", 0.6),
        Target("d_execute_many", "raw", "asyncpg", "raw", 0.9),
        Target("d_execute_many", "core", "asyncpg", "raw", 0.9),
        Target("e_concurrent", "raw", "asyncpg_pool", "raw", 1.0),
        Target("e_concurrent", "core", "asyncpg_pool", "raw", 1.0),
    ),
)

MYSQL = Backend(
    name="mysql",
    title="MariaDB",
    subject="aiodatabases",
    baseline="asyncmy",
    contenders=(
        Contender(
            key="aiodatabases",
            label="aiodatabases (this repository)",
            env=EnvSpec(
                "aiodatabases-mysql",
                requirements=(f"sqlalchemy=={SQLALCHEMY}", f"asyncmy=={ASYNCMY}"),
                editable=(".[mysql]",),
            ),
            module=_DATABASES_API,
            packages=("aiodatabases", "sqlalchemy", "asyncmy"),
            options=(("lib", "aiodatabases"), ("scheme", "mysql"), ("attr", "1"), ("conn", "1")),
        ),
        Contender(
            key="databases",
            label=f"databases {DATABASES}",
            env=EnvSpec(
                "databases-mysql",
                requirements=(
                    f"databases[asyncmy]=={DATABASES}",
                    f"asyncmy=={ASYNCMY}",
                    f"sqlalchemy=={SQLALCHEMY}",
                ),
            ),
            module=_DATABASES_API,
            packages=("databases", "asyncmy", "sqlalchemy"),
            options=(("lib", "databases"), ("scheme", "mysql+asyncmy"), ("attr", "0")),
        ),
        Contender(
            key="sqlalchemy",
            label=f"SQLAlchemy {SQLALCHEMY} async Core",
            env=EnvSpec(
                "sqlalchemy-mysql",
                requirements=(f"sqlalchemy[asyncio]=={SQLALCHEMY}", f"asyncmy=={ASYNCMY}"),
            ),
            module=_SQLALCHEMY_API,
            packages=("sqlalchemy", "asyncmy", "greenlet"),
            options=(("scheme", "mysql+asyncmy"),),
        ),
        Contender(
            key="asyncmy_pool",
            label=f"asyncmy {ASYNCMY} pool",
            env=EnvSpec("asyncmy", requirements=(f"asyncmy=={ASYNCMY}",)),
            module="benchlib.mysql.raw_asyncmy",
            packages=("asyncmy",),
            options=(("mode", "pool"),),
        ),
        Contender(
            key="asyncmy",
            label=f"asyncmy {ASYNCMY} held connection",
            env=EnvSpec("asyncmy", requirements=(f"asyncmy=={ASYNCMY}",)),
            module="benchlib.mysql.raw_asyncmy",
            packages=("asyncmy",),
            options=(("mode", "held"),),
        ),
    ),
    targets=(
        Target("a_point_select", "raw", "asyncmy", "raw", 0.6),
        Target("a_point_select", "core", "databases", "core", 4.0),
        Target("b_fetch_rows", "by_name", "asyncmy", "by_index", 0.8),
        Target("b_fetch_rows", "by_attr", "asyncmy", "by_index", 0.8),
        Target("b_fetch_rows", "raw_by_name", "asyncmy", "by_index", 0.8),
        Target("d_execute_many", "raw", "asyncmy", "raw", 0.9),
        Target("d_execute_many", "core", "asyncmy", "raw", 0.9),
        Target("e_concurrent", "raw", "asyncmy_pool", "raw", 1.0),
        Target("e_concurrent", "core", "asyncmy_pool", "raw", 1.0),
    ),
)

#: Every backend the driver knows, by name.
BACKENDS: dict[str, Backend] = {b.name: b for b in (SQLITE, POSTGRESQL, MYSQL)}
