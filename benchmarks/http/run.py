"""HTTP benchmark: the notes routes served by uvicorn on each contender, loaded by wrk.

```
python benchmarks/http/run.py                                # PostgreSQL and SQLite, 3 reps
python benchmarks/http/run.py --backends sqlite --reps 5 --duration 10
python benchmarks/http/run.py --quick                        # a smoke test, not a measurement
python benchmarks/http/run.py --write benchmarks/http        # results-*.md, *.json, *.png
```

Every contender serves the same three routes (get one note by id, list 20 notes, create a
note) from uvicorn (one worker, no reload, access log off, asyncio loop, httptools) on
127.0.0.1 in its own process, started from its own virtual environment where its packages
differ (databases 0.9.0 has one; everything else shares ``http-main``). wrk loads it from a
separate process (``-t1 -c64``, a Lua script per scenario, random ids) for ``--duration``
seconds after an untimed warm-up of ``--warmup`` seconds. Repetitions are interleaved (every
contender once, then again), and the report shows medians over repetitions of requests/s and
of wrk's p50/p99 latency. Needs only the standard library, wrk and psql; the environments are
built on first use under ``benchmarks/.envs``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import common  # noqa: E402
import envspecs  # noqa: E402
from benchlib import envs  # noqa: E402
from benchlib.registry import EnvSpec  # noqa: E402

SCENARIOS = ("get", "list", "create")
SERVICE_SCENARIOS = (*SCENARIOS, "search")


@dataclass(frozen=True)
class Contender:
    """One server: its label, environment, ASGI app and how it finds its database."""

    key: str
    label: str
    env: EnvSpec
    app: str
    library: str = ""
    factory: bool = False
    pool_options: bool = False

    @property
    def is_service(self) -> bool:
        return self.key == "notes"


CONTENDERS = (
    Contender(
        "databases09",
        "FastAPI tutorial on databases 0.9.0",
        envspecs.DATABASES_ENV,
        "tutorial:app",
        library="databases",
        pool_options=True,
    ),
    Contender(
        "aiodatabases",
        "the same FastAPI app on aiodatabases",
        envspecs.MAIN_ENV,
        "tutorial:app",
        library="aiodatabases",
        pool_options=True,
    ),
    Contender("sqlalchemy", "FastAPI on SQLAlchemy 2 async Core", envspecs.MAIN_ENV, "sa_core:app"),
    Contender("raw_fastapi", "FastAPI on the raw driver", envspecs.MAIN_ENV, "raw_fastapi:app"),
    Contender(
        "raw_starlette",
        "Starlette + orjson on the raw driver",
        envspecs.MAIN_ENV,
        "raw_starlette:app",
    ),
    Contender(
        "notes",
        "full notes service",
        envspecs.MAIN_ENV,
        "notes.app:create_app",
        factory=True,
    ),
)

#: (backend, subject, scenario list, other, minimum): subject >= minimum x other.
TARGETS = (
    ("postgresql", "aiodatabases", SCENARIOS, "databases09", 1.6),
    ("postgresql", "aiodatabases", SCENARIOS, "raw_fastapi", 0.9),
    ("postgresql", "notes", SCENARIOS, "aiodatabases", 0.7),
    ("sqlite", "aiodatabases", SCENARIOS, "databases09", 5.0),
    ("sqlite", "notes", SCENARIOS, "aiodatabases", 0.7),
)

DRIVERS = {"postgresql": "asyncpg", "sqlite": "aiosqlite"}

LUA = """
local ids = {%(ids)s}
local paths = {%(paths)s}
math.randomseed(%(seed)d)
wrk.method = "%(method)s"
%(headers)s
%(body)s
request = function()
  local path = paths[math.random(#paths)]
  if #ids > 0 then path = path .. ids[math.random(#ids)] end
  return wrk.format(nil, path)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK-RESULT {"requests":%%d,"duration_us":%%d,"connect":%%d,"read":%%d,"write":%%d,' ..
    '"status":%%d,"timeout":%%d,"p50_us":%%d,"p99_us":%%d,"mean_us":%%.1f,"max_us":%%d}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean, latency.max))
end
"""


def lua_string(value: str) -> str:
    return json.dumps(value)  # a JSON string literal is a valid Lua string literal here


def write_script(
    path: Path,
    *,
    method: str,
    paths: list[str],
    ids: list[int],
    token: str | None,
    body: dict[str, Any] | None,
    seed: int,
) -> Path:
    """Write the wrk Lua script of one scenario."""
    headers = []
    if token:
        headers.append(f'wrk.headers["Authorization"] = {lua_string("Bearer " + token)}')
    if body is not None:
        headers.append('wrk.headers["Content-Type"] = "application/json"')
    path.write_text(
        LUA
        % {
            "ids": ",".join(map(str, ids)),
            "paths": ",".join(lua_string(p) for p in paths),
            "seed": seed,
            "method": method,
            "headers": "\n".join(headers),
            "body": f"wrk.body = {lua_string(json.dumps(body))}" if body is not None else "",
        }
    )
    return path


def run_wrk(base: str, script: Path, seconds: float, connections: int) -> dict[str, Any]:
    """Run wrk for ``seconds`` and return its WRK-RESULT, with requests/s added."""
    cmd = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        base,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    match = re.search(r"^WRK-RESULT (\{.*\})$", proc.stdout, re.M)
    if proc.returncode != 0 or match is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stdout}{proc.stderr}")
    result: dict[str, Any] = json.loads(match.group(1))
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    result["errors"] = sum(result[k] for k in ("connect", "read", "write", "status", "timeout"))
    return result


# -- one backend ----------------------------------------------------------------------------


@dataclass
class Backend:
    """Where the contenders' data lives on one backend."""

    name: str
    workdir: Path
    minimal_dsn: str = ""
    service_url: str = ""


def prepare_backend(name: str, args: argparse.Namespace, workdir: Path) -> Backend:
    backend = Backend(name, workdir)
    if name == "postgresql":
        backend.minimal_dsn = common.pg_recreate_database(args.pg_admin_url, "bench_http_min")
        backend.service_url = common.pg_recreate_database(args.pg_admin_url, "bench_http_notes")
    else:
        backend.minimal_dsn = f"sqlite:///{workdir / 'minimal.db'}"
        backend.service_url = f"sqlite:///{workdir / 'service.db'}"
    return backend


def contender_dsn(contender: Contender, backend: Backend) -> str:
    if contender.pool_options and backend.name == "postgresql":
        return backend.minimal_dsn + "?min_size=10&max_size=10"
    return backend.minimal_dsn


@dataclass
class ServiceData:
    """What the service scenarios need: the token and the ids of the seeded notes."""

    token: str | None
    ids: list[int]
    auth: bool


def run_contender(
    contender: Contender,
    backend: Backend,
    python: Path,
    args: argparse.Namespace,
    rep: int,
    service_data: dict[str, ServiceData],
) -> dict[str, dict[str, Any]]:
    """Start one contender, run its scenarios, stop it; return results by scenario."""
    logs = backend.workdir / "logs"
    source = common.source_env(args.source)
    if contender.is_service:
        env = common.notes_env(backend.service_url) | source
        ready = "/health/ready"
    else:
        subprocess.run(
            [str(python), str(HERE / "seed.py"), backend.minimal_dsn, str(args.rows)],
            check=True,
            timeout=300,
        )
        env = {"BENCH_DSN": contender_dsn(contender, backend), "BENCH_LIBRARY": contender.library}
        env |= source
        ready = "/notes/1"
    server = common.start_server(
        python,
        contender.app,
        env=env,
        log_path=logs / f"{backend.name}-{contender.key}-{rep}.log",
        factory=contender.factory,
        app_dir=common.APPS,
        ready_path=ready,
    )
    results: dict[str, dict[str, Any]] = {}
    try:
        if contender.is_service:
            data = service_data.get(backend.name)
            if data is None:
                auth = common.has_auth(server.base)
                token = common.issue_token(server.base, "bench@example.com") if auth else None
                ids = common.seed_notes(server.base, token, args.rows, random.Random(7))
                common.analyze(backend.service_url)
                data = service_data[backend.name] = ServiceData(token, ids, auth)
            elif data.auth:
                # A new server process: log in again (the token of the last one still works,
                # but a fresh one keeps expiry out of the picture).
                data.token = common.issue_token(server.base, "bench@example.com")
            prefix, ids, token = "/api/notes", data.ids, data.token
            scenarios = SERVICE_SCENARIOS
            create_body: dict[str, Any] = {"title": "load test note", "body": "written by wrk"}
        else:
            prefix, ids, token = "/notes", list(range(1, args.rows + 1)), None
            scenarios = SCENARIOS
            create_body = {"text": "load test note", "completed": False}
        for scenario in scenarios:
            script_args: dict[str, Any] = {"token": token, "body": None, "ids": [], "seed": rep}
            if scenario == "get":
                script_args |= {"method": "GET", "paths": [prefix + "/"], "ids": ids}
            elif scenario == "list":
                script_args |= {"method": "GET", "paths": [prefix + "?limit=20"]}
            elif scenario == "search":
                paths = [f"{prefix}?limit=20&q={word}" for word in common.VOCABULARY]
                script_args |= {"method": "GET", "paths": paths}
            else:
                script_args |= {"method": "POST", "paths": [prefix], "body": create_body}
            script = write_script(
                backend.workdir / f"{contender.key}-{scenario}.lua", **script_args
            )
            if args.warmup > 0:
                run_wrk(server.base, script, args.warmup, args.connections)
            result = run_wrk(server.base, script, args.duration, args.connections)
            result["rss_kib"] = common.rss_kib(server.pid)
            results[scenario] = result
            common.log(
                f"  {backend.name} rep {rep} {contender.key:14} {scenario:6} "
                f"{result['rps']:8.0f} req/s  p50 {result['p50_us'] / 1000:6.1f} ms  "
                f"p99 {result['p99_us'] / 1000:6.1f} ms  errors {result['errors']}"
            )
    finally:
        code = server.stop()
        if code not in (0, None):
            common.log(f"  {contender.key} exited with {code}:\n{server.log_tail()}")
    return results


# -- report -----------------------------------------------------------------------------------


def medians(samples: list[dict[str, Any]]) -> dict[str, Any]:
    rps = [s["rps"] for s in samples]
    return {
        "rps": statistics.median(rps),
        "rps_min": min(rps),
        "rps_max": max(rps),
        "p50_ms": statistics.median(s["p50_us"] for s in samples) / 1000,
        "p99_ms": statistics.median(s["p99_us"] for s in samples) / 1000,
        "errors": sum(s["errors"] for s in samples),
        "reps": len(samples),
    }


def summarize(raw: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, dict[str, Any]]:
    """Medians per contender and scenario: ``{contender: {scenario: {...}}}``."""
    return {
        key: {scenario: medians(samples) for scenario, samples in per.items() if samples}
        for key, per in raw.items()
    }


def targets(backend: str, summary: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for name, subject, scenarios, other, minimum in TARGETS:
        if name != backend:
            continue
        for scenario in scenarios:
            a = summary.get(subject, {}).get(scenario)
            b = summary.get(other, {}).get(scenario)
            ratio = a["rps"] / b["rps"] if a and b and b["rps"] else None
            rows.append(
                {
                    "scenario": scenario,
                    "subject": subject,
                    "other": other,
                    "minimum": minimum,
                    "ratio": ratio,
                    "passed": ratio is not None and ratio >= minimum,
                }
            )
    return rows


def label(key: str) -> str:
    return next(c.label for c in CONTENDERS if c.key == key)


def render(backend: str, run: dict[str, Any]) -> str:
    summary = run["summary"][backend]
    driver = DRIVERS[backend]
    lines = [
        f"# HTTP benchmark: {backend}",
        "",
        f"Command: `{run['command']}`",
        "",
        f"- run: {run['started']} to {run['finished']} UTC, commit {run['commit']}, "
        f"{run['cpus']} CPUs, Python {run['python']}, load average at start {run['load_start']}"
        f", at end {run['load_end']}",
        f"- {run['reps']} interleaved repetitions; each scenario: {run['warmup']} s untimed "
        f"warm-up, then {run['duration']} s of `wrk -t1 -c{run['connections']}`; "
        f"{run['rows']} seeded notes",
        f"- uvicorn {envspecs.UVICORN} (httptools {envspecs.HTTPTOOLS}, asyncio loop, one "
        f"worker, no access log), FastAPI {envspecs.FASTAPI}, SQLAlchemy {envspecs.SQLALCHEMY}, "
        f"asyncpg {envspecs.ASYNCPG}, aiosqlite {envspecs.AIOSQLITE}, databases "
        f"{envspecs.DATABASES}, orjson {envspecs.ORJSON}",
        f"- full service: auth {'on, one pre-issued bearer token' if run['auth'].get(backend) else 'absent (no /api/auth routes on this commit)'}",  # noqa: E501
        f"- raw contenders use {driver}",
        "",
        "Medians over repetitions; req/s min-max in brackets; latency is wrk's per-request "
        "latency at 64 connections.",
        "",
    ]
    for scenario in SERVICE_SCENARIOS:
        present = [k for k in summary if scenario in summary[k]]
        if not present:
            continue
        base = summary.get("databases09", {}).get(scenario)
        ours = summary.get("aiodatabases", {}).get(scenario)
        lines += [
            f"## {scenario}",
            "",
            "| contender | req/s | p50 ms | p99 ms | errors | vs databases 0.9 | vs aiodatabases |",
            "|---|---|---|---|---|---|---|",
        ]
        for key in present:
            m = summary[key][scenario]
            vs_base = f"{m['rps'] / base['rps']:.2f}x" if base else "-"
            vs_ours = f"{m['rps'] / ours['rps']:.2f}x" if ours else "-"
            lines.append(
                f"| {label(key)} | {m['rps']:.0f} ({m['rps_min']:.0f}-{m['rps_max']:.0f}) | "
                f"{m['p50_ms']:.1f} | {m['p99_ms']:.1f} | {m['errors']} | {vs_base} | {vs_ours} |"
            )
        lines.append("")
    rows = run["targets"][backend]
    lines += ["## Targets", "", "| target | measured | required | result |", "|---|---|---|---|"]
    for row in rows:
        measured = f"{row['ratio']:.2f}x" if row["ratio"] is not None else "not run"
        verdict = "PASS" if row["passed"] else "MISS" if row["ratio"] is not None else "-"
        lines.append(
            f"| {row['scenario']}: {label(row['subject'])} vs {label(row['other'])} | "
            f"{measured} | >= {row['minimum']}x | {verdict} |"
        )
    met = sum(r["passed"] for r in rows)
    measured_rows = sum(r["ratio"] is not None for r in rows)
    lines += ["", f"{met}/{measured_rows} measured targets met."]
    if run["errors"]:
        lines += ["", "## Errors", "", *(f"- {e}" for e in run["errors"])]
    return "\n".join(lines) + "\n"


def git_commit(where: Path = common.REPO) -> str:
    """The short commit id checked out in ``where``."""
    try:
        out = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="postgresql,sqlite")
    parser.add_argument("--contenders", default=",".join(c.key for c in CONTENDERS))
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0, help="timed seconds per scenario")
    parser.add_argument("--warmup", type=float, default=2.0, help="untimed seconds before")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rows", type=int, default=10_000, help="seeded notes")
    parser.add_argument("--quick", action="store_true", help="1 rep, 2 s: a smoke test")
    parser.add_argument("--pg-admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--source", type=Path, help="serve this checkout's src/ (a worktree)")
    parser.add_argument("--write", type=Path, help="write results-*.md, results-http.json, PNGs")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the environments")
    args = parser.parse_args(argv)
    if args.source is not None:
        # A worktree has no build products: its servers would run the pure-Python records.
        # (The check this replaces looked for _crecords*, which the C source itself matched.)
        common.ensure_speedups(args.source.resolve())
    if args.quick:
        args.reps, args.duration, args.warmup, args.rows = 1, 2.0, 1.0, 1000
    backends = [b for b in args.backends.split(",") if b]
    chosen = [c for c in CONTENDERS if c.key in args.contenders.split(",")]

    pythons: dict[str, Path] = {}
    for spec in {c.env.name: c.env for c in chosen}.values():
        pythons[spec.name] = envs.ensure_env(
            spec,
            common.REPO / "benchmarks" / ".envs",
            common.REPO,
            rebuild=args.rebuild,
            log=common.log,
        )

    run: dict[str, Any] = {
        "command": "python benchmarks/http/run.py " + " ".join(argv or sys.argv[1:]),
        "started": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M"),
        "commit": git_commit()
        if args.source is None
        else f"{git_commit(args.source)} (served from the worktree {args.source})",
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_start": " ".join(f"{x:.1f}" for x in os.getloadavg()),
        "reps": args.reps,
        "duration": args.duration,
        "warmup": args.warmup,
        "connections": args.connections,
        "rows": args.rows,
        "errors": [],
        "raw": {},
        "auth": {},
    }
    workroot = Path(tempfile.mkdtemp(prefix="http-bench-"))
    for backend_name in backends:
        workdir = workroot / backend_name
        workdir.mkdir()
        backend = prepare_backend(backend_name, args, workdir)
        if any(c.is_service for c in chosen):
            common.migrate_notes(
                pythons[envspecs.MAIN_ENV.name],
                backend.service_url,
                workdir / "migrate.log",
                env=common.source_env(args.source),
            )
        raw: dict[str, dict[str, list[dict[str, Any]]]] = {c.key: {} for c in chosen}
        service_data: dict[str, ServiceData] = {}
        for rep in range(1, args.reps + 1):
            for contender in chosen:
                try:
                    results = run_contender(
                        contender, backend, pythons[contender.env.name], args, rep, service_data
                    )
                except Exception as exc:
                    message = f"{backend_name} {contender.key} rep {rep}: {exc}"
                    run["errors"].append(message)
                    common.log("  ERROR " + message)
                    continue
                for scenario, result in results.items():
                    raw[contender.key].setdefault(scenario, []).append(result)
        run["raw"][backend_name] = raw
        if backend_name in service_data:
            run["auth"][backend_name] = service_data[backend_name].auth
    run["finished"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M")
    run["load_end"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
    run["summary"] = {b: summarize(run["raw"][b]) for b in backends}
    run["targets"] = {b: targets(b, run["summary"][b]) for b in backends}
    for backend_name in backends:
        print(render(backend_name, run))
    if args.write:
        args.write.mkdir(parents=True, exist_ok=True)
        for backend_name in backends:
            (args.write / f"results-{backend_name}.md").write_text(render(backend_name, run))
        data_path = args.write / "results-http.json"
        data_path.write_text(json.dumps(run, indent=1) + "\n")
        plot = subprocess.run(
            [str(pythons[envspecs.MAIN_ENV.name]), str(HERE / "plot.py"), str(data_path)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if plot.returncode != 0:
            run["errors"].append(f"plot failed: {plot.stderr[-2000:]}")
            common.log(plot.stderr)
        else:
            common.log(plot.stdout.strip())
    return 1 if run["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
