"""Instructions per request of the HTTP contenders, counted in process with callgrind.

```
python benchmarks/http/instructions.py                    # SQLite: every contender, 3 scenarios
python benchmarks/http/instructions.py --backend postgresql --contenders aiodatabases,raw_fastapi
python benchmarks/http/instructions.py --scenarios get --calls 300 --source /tmp/worktree
```

Requests per second on a shared 2-core machine swing with the machine; the instructions a
request costs do not. For each contender and scenario this runs ``asgi_load.py`` under
valgrind's callgrind in the contender's environment twice, with N and with 3N requests (64 at
a time, straight into the ASGI app: no uvicorn, no sockets), and prints the difference over
2N: imports, start-up and seeding cancel out. Callgrind counts the instructions of the Python
process and all its threads (aiosqlite's, databases 0.9's); the database server's work on
PostgreSQL and the kernel's are not in it. Same environments as ``run.py``; needs valgrind.
Every count starts from a freshly seeded database; PostgreSQL databases are dropped after.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import common  # noqa: E402
import envspecs  # noqa: E402, F401  # puts benchmarks/ on the path, for benchlib
from benchlib import callgrind, envs  # noqa: E402


def _load_http_run() -> ModuleType:
    """This directory's ``run.py`` (benchmarks/ has a ``run.py`` of its own)."""
    spec = importlib.util.spec_from_file_location("http_run", HERE / "run.py")
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {HERE / 'run.py'}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["http_run"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


http_run = _load_http_run()
CONTENDERS, SCENARIOS = http_run.CONTENDERS, http_run.SCENARIOS
Contender = http_run.Contender

MINIMAL_DB = "bench_http_instr_min"
SERVICE_DB = "bench_http_instr_notes"


def count(
    python: Path, contender: Contender, scenario: str, calls: int, env: dict[str, str]
) -> int:
    """Instructions of one ``asgi_load.py`` run under callgrind."""
    args = [contender.app, scenario, str(calls), *(["--factory"] if contender.factory else [])]
    return callgrind.instructions(
        str(HERE / "asgi_load.py"),
        args,
        env,
        python=str(python),
        cwd=str(common.APPS),
        timeout=1800,
    )


def fresh_database(
    contender: Contender, backend: str, python: Path, args: argparse.Namespace, workdir: Path
) -> dict[str, str]:
    """Seed a new database for one run of ``contender``; return the run's environment."""
    if contender.is_service:
        if backend == "postgresql":
            url = common.pg_recreate_database(args.pg_admin_url, SERVICE_DB)
        else:
            path = workdir / "service.db"
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            url = f"sqlite:///{path}"
        source = common.source_env(args.source)
        common.migrate_notes(python, url, workdir / "migrate.log", env=source)
        return common.notes_env(url) | source
    if backend == "postgresql":
        dsn = common.pg_recreate_database(args.pg_admin_url, MINIMAL_DB)
    else:
        dsn = f"sqlite:///{workdir / 'minimal.db'}"
    subprocess.run([str(python), str(HERE / "seed.py"), dsn, "1000"], check=True, timeout=300)
    if contender.pool_options and backend == "postgresql":
        dsn += "?min_size=10&max_size=10"
    return {"BENCH_DSN": dsn, "BENCH_LIBRARY": contender.library} | common.source_env(args.source)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument(
        "--contenders",
        default="databases09,aiodatabases,raw_fastapi,raw_starlette,notes",
        help="keys as in run.py (sqlalchemy too)",
    )
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--calls", type=int, default=500, help="N: runs of N and 3N requests")
    parser.add_argument("--pg-admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--source", type=Path, help="count this checkout's src/ (a worktree)")
    args = parser.parse_args(argv)
    keys = [k for k in args.contenders.split(",") if k]
    unknown = set(keys) - {c.key for c in CONTENDERS}
    scenarios = [s for s in args.scenarios.split(",") if s]
    if unknown or not set(scenarios) <= set(SCENARIOS) or args.calls < 1:
        parser.error(f"unknown contenders {sorted(unknown)} or scenarios, or calls < 1")
    chosen = [c for c in CONTENDERS if c.key in keys]
    pythons = {
        spec.name: envs.ensure_env(
            spec, common.REPO / "benchmarks" / ".envs", common.REPO, log=common.log
        )
        for spec in {c.env.name: c.env for c in chosen}.values()
    }
    print(
        f"instructions per request, {args.backend}, in process (runs of {args.calls} and "
        f"{3 * args.calls} requests, 64 at a time)\n"
    )
    print("| contender | " + " | ".join(scenarios) + " |")
    print("|---|" + "---|" * len(scenarios))
    try:
        with tempfile.TemporaryDirectory(prefix="http-instr-") as tmp:
            for contender in chosen:
                python = pythons[contender.env.name]
                cells = []
                for scenario in scenarios:
                    totals = []
                    for calls in (args.calls, 3 * args.calls):
                        env = fresh_database(contender, args.backend, python, args, Path(tmp))
                        totals.append(count(python, contender, scenario, calls, env))
                    per_request = (totals[1] - totals[0]) / (2 * args.calls)
                    common.log(f"  {contender.key} {scenario}: {per_request:,.0f}")
                    cells.append(f"{per_request:,.0f}")
                print(f"| {contender.label} | " + " | ".join(cells) + " |", flush=True)
    finally:
        if args.backend == "postgresql":
            for name in (MINIMAL_DB, SERVICE_DB):
                common.pg_query(args.pg_admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
