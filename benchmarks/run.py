#!/usr/bin/env python3
"""Benchmark aiodatabases against other async SQL libraries, one process per contender.

Usage::

    python benchmarks/run.py sqlite                  # 3 interleaved repetitions, full sizes
    python benchmarks/run.py sqlite --quick          # tiny sizes, smoke test
    python benchmarks/run.py sqlite --reps 5 --write benchmarks/results-sqlite.md
    python benchmarks/run.py postgresql --write benchmarks/results-postgresql.md
    python benchmarks/run.py mysql --write benchmarks/results-mysql.md

Each contender is installed in its own virtual environment under ``benchmarks/.envs/`` (built
on first use, reused afterwards). Every repetition runs each contender once, in a fresh worker
process (``benchmarks/worker.py``) on a fresh database (a fresh file for SQLite, a freshly
created database on the server for PostgreSQL and MariaDB); the driver prints a markdown table of
median ops/s, ratios and the issue's targets.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import hashlib
import importlib
import json
import os
import platform
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from benchlib.common import RESULT_PREFIX, WORKLOAD_KEYS, Sizes  # noqa: E402
from benchlib.envs import EnvError, ensure_env  # noqa: E402
from benchlib.registry import BACKENDS, Backend, Contender  # noqa: E402
from benchlib.report import Collected, render, target_rows  # noqa: E402

REPO_ROOT = HERE.parent
ENVS_ROOT = HERE / ".envs"


def log(message: str) -> None:
    """Print a progress line on stderr."""
    print(message, file=sys.stderr, flush=True)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("backend", choices=sorted(BACKENDS), help="database backend")
    parser.add_argument("--reps", type=int, default=3, help="interleaved repetitions (>= 1)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes for a smoke test")
    parser.add_argument(
        "--contenders",
        default="",
        help="comma-separated contender keys to run (default: all of the backend's)",
    )
    parser.add_argument(
        "--workloads",
        default="",
        help="comma-separated workload letters or keys, e.g. a,c (default: all)",
    )
    parser.add_argument("--baseline", default="", help="contender the 'vs' column divides by")
    parser.add_argument("--write", metavar="PATH", help="also write the markdown report here")
    parser.add_argument("--json", metavar="PATH", help="also write the raw samples as JSON")
    parser.add_argument(
        "--timeout", type=float, default=1200.0, help="seconds allowed per worker process"
    )
    parser.add_argument(
        "--install-timeout", type=float, default=900.0, help="seconds allowed per pip step"
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        help="seconds after which one variant stops early (default: 20, or 5 with --quick)",
    )
    parser.add_argument(
        "--journal-mode",
        default="",
        metavar="MODE",
        help="SQLite only: set this journal mode (e.g. wal) in every database file before the "
        "contender connects; default leaves SQLite's default (delete)",
    )
    parser.add_argument(
        "--synchronous",
        default="",
        metavar="MODE",
        help="SQLite only: PRAGMA synchronous (e.g. normal) on every contender connection that "
        "can take it (sqlite3, aiosqlite, SQLAlchemy, aiodatabases; not databases 0.9)",
    )
    parser.add_argument(
        "--host",
        default="",
        help="server backends: database server host (default 127.0.0.1)",
    )
    parser.add_argument(
        "--port",
        default="",
        help="server backends: port (default 5432 for postgresql, 3306 for mysql)",
    )
    parser.add_argument(
        "--user",
        default="",
        help="server backends: user, without password (default postgres / root)",
    )
    parser.add_argument("--python", default=sys.executable, help="base interpreter for venvs")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the environments")
    parser.add_argument("--tmpdir", default=None, help="where database files are created")
    args = parser.parse_args(argv)
    if args.reps < 1:
        parser.error("--reps must be >= 1")
    return args


def _select_workloads(spec: str) -> list[str]:
    """Turn ``a,c`` or full workload keys into workload keys."""
    if not spec:
        return list(WORKLOAD_KEYS)
    chosen: list[str] = []
    for item in (s.strip() for s in spec.split(",") if s.strip()):
        matches = [k for k in WORKLOAD_KEYS if k == item or k.split("_", 1)[0] == item]
        if not matches:
            raise SystemExit(f"unknown workload {item!r}; known: {', '.join(WORKLOAD_KEYS)}")
        chosen += [m for m in matches if m not in chosen]
    return chosen


def _select_contenders(backend: Backend, spec: str) -> list[Contender]:
    """Return the contenders named in ``spec`` (all when empty), in registry order."""
    if not spec:
        return list(backend.contenders)
    wanted = [s.strip() for s in spec.split(",") if s.strip()]
    known = {c.key for c in backend.contenders}
    unknown = [w for w in wanted if w not in known]
    if unknown:
        raise SystemExit(f"unknown contender(s) {unknown}; known: {', '.join(sorted(known))}")
    return [c for c in backend.contenders if c.key in wanted]


def source_fingerprint(root: Path) -> str:
    """Return a short hash of every ``.py`` file under ``root`` (empty if there is none)."""
    digest = hashlib.sha256()
    files = sorted(root.rglob("*.py")) if root.is_dir() else []
    for path in files:
        digest.update(str(path.relative_to(root)).encode())
        try:
            digest.update(path.read_bytes())
        except OSError:
            continue
    return digest.hexdigest()[:12] if files else ""


def git_describe(root: Path) -> str:
    """Return ``<commit>`` or ``<commit>+dirty`` for ``root``, or ``no commit`` / ``no git``."""
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if head.returncode != 0:
            return "no commit"
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return "no git"
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def _worker_env() -> dict[str, str]:
    """Return the environment for workers: ours minus anything that would leak packages."""
    drop = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"}
    return {k: v for k, v in os.environ.items() if k not in drop}


def run_worker(
    python: Path,
    backend: Backend,
    contender: Contender,
    sizes: Sizes,
    workloads: list[str],
    options: dict[str, str],
    timeout: float,
    tmpdir: str | None,
) -> dict[str, Any]:
    """Run one worker process and return its result payload.

    A crash, a timeout or a missing result line is returned as a payload with ``fatal`` set.
    """
    workdir = tempfile.mkdtemp(prefix=f"bench-{backend.name}-{contender.key}-", dir=tmpdir)
    all_options = dict(contender.options)
    all_options.update(options)
    if backend.name != "sqlite":
        # The worker creates and drops this database; the driver drops it too if the worker
        # died before it could.
        all_options["database"] = f"aiodb_bench_{os.getpid()}_{secrets.token_hex(4)}"
    cmd = [
        str(python),
        str(HERE / "worker.py"),
        "--backend",
        backend.name,
        "--module",
        contender.module,
        "--workdir",
        workdir,
        "--sizes",
        sizes.to_json(),
        "--workloads",
        ",".join(workloads),
        "--packages",
        ",".join(contender.packages),
    ]
    for key, value in all_options.items():
        cmd += ["--option", f"{key}={value}"]
    try:
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=workdir,
            env=_worker_env(),
            start_new_session=True,
        )
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return {"fatal": f"worker timed out after {timeout:g}s (raise --timeout)"}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if "database" in all_options:
            _drop_database(backend, all_options)
    payload: dict[str, Any] | None = None
    for line in stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            payload = json.loads(line[len(RESULT_PREFIX) :])
    if stderr.strip():
        tail = "\n".join(stderr.strip().splitlines()[-25:])
        log(f"  [{contender.key} stderr]\n{tail}")
    if payload is None:
        tail = "\n".join((stderr or stdout).strip().splitlines()[-5:])
        return {"fatal": f"worker exited with code {proc.returncode} and no result: {tail}"}
    return payload


def _drop_database(backend: Backend, options: dict[str, str]) -> None:
    """Drop a worker's server database if it is still there (the worker may have died)."""
    try:
        module = importlib.import_module(f"benchlib.{backend.name}")
        module.cleanup(
            {k: options.get(k, "") for k in ("host", "port", "user")}
            | {"database": options["database"]}
        )
    except Exception as exc:
        log(f"  could not drop database {options['database']}: {exc}")


def _summary(payload: dict[str, Any]) -> str:
    """Summarise a worker payload in one progress line."""
    parts = []
    for key, result in payload.get("results", {}).items():
        if "error" in result:
            parts.append(f"{key}=ERROR")
        else:
            parts.append(f"{key}={result['ops_per_s']:,.0f}")
    if payload.get("fatal"):
        parts.append(f"FATAL {payload['fatal'].splitlines()[0]}")
    return " ".join(parts)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return 0, or 1 when a contender failed to install or run."""
    args = _parse_args(argv)
    backend = BACKENDS[args.backend]
    if args.baseline:
        backend = dataclasses.replace(backend, baseline=args.baseline)
    contenders = _select_contenders(backend, args.contenders)
    workloads = _select_workloads(args.workloads)
    sizes = Sizes.quick() if args.quick else Sizes()
    if args.budget is not None:
        sizes = dataclasses.replace(sizes, budget_s=args.budget)
    options: dict[str, str] = {}
    if args.journal_mode:
        options["journal_mode"] = args.journal_mode
    if args.synchronous:
        options["synchronous"] = args.synchronous
    for name in ("host", "port", "user"):
        if getattr(args, name):
            options[name] = getattr(args, name)

    command = "python benchmarks/run.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    started = dt.datetime.now(dt.UTC)
    source_before = source_fingerprint(REPO_ROOT / "src")
    data = Collected(backend=backend, contenders=[], sizes=sizes, reps=args.reps)
    failed = False

    pythons: dict[str, Path] = {}
    for contender in contenders:
        try:
            pythons[contender.key] = ensure_env(
                contender.env,
                ENVS_ROOT,
                REPO_ROOT,
                python=args.python,
                rebuild=args.rebuild,
                timeout=args.install_timeout,
                log=log,
            )
        except EnvError as exc:
            failed = True
            log(f"ERROR: environment for {contender.key!r} could not be built:\n{exc}")
            data.error(contender.key, f"environment not built: {exc}")
    runnable = [c for c in contenders if c.key in pythons]
    data.contenders = list(contenders)

    for rep in range(1, args.reps + 1):
        for contender in runnable:
            t0 = time.perf_counter()
            log(f"[rep {rep}/{args.reps}] {contender.key} ...")
            payload = run_worker(
                pythons[contender.key],
                backend,
                contender,
                sizes,
                workloads,
                options,
                args.timeout,
                args.tmpdir,
            )
            if payload.get("fatal"):
                failed = True
            data.add(contender.key, payload)
            log(
                f"[rep {rep}/{args.reps}] {contender.key} {time.perf_counter() - t0:.1f}s "
                f"{_summary(payload)}"
            )

    finished = dt.datetime.now(dt.UTC)
    source_after = source_fingerprint(REPO_ROOT / "src")
    data.meta = {
        "command": f"`{command}`",
        "date": f"{started:%Y-%m-%d %H:%M} UTC (took {(finished - started).total_seconds():.0f}s)",
        "machine": (
            f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, "
            f"Python {platform.python_version()}"
        ),
        "sizes": ("quick (smoke test, not for comparison)" if args.quick else "default")
        + ", per-variant time budget "
        + f"{sizes.budget_s:g}s",
    }
    source = f"git {git_describe(REPO_ROOT)}, src/ sha256 {source_before or 'n/a'}"
    if source_after != source_before:
        source += (
            f" -> {source_after or 'n/a'}: WARNING, the source changed during the run, so the "
            "repetitions did not all measure the same code"
        )
    if any(c.key == backend.subject for c in contenders):
        data.meta[f"{backend.subject} source"] = source
    if backend.name != "sqlite":
        try:
            describe = importlib.import_module(f"benchlib.{backend.name}").describe
            data.meta["server"] = describe(options) + "; a fresh database per worker"
        except Exception as exc:
            data.meta["server"] = f"unknown ({exc})"
    if backend.name == "sqlite":
        data.meta["journal mode"] = (
            f"`{args.journal_mode}` set in every database file before the contender connects"
            if args.journal_mode
            else "SQLite default (`delete`) in every fresh file; a library may switch it when "
            "it connects (see journal_mode_after)"
        )
        data.meta["synchronous"] = (
            f"`PRAGMA synchronous={args.synchronous}` on every connection that can take it "
            "(see the database column)"
            if args.synchronous
            else "each library's default (SQLite's default is `full`)"
        )
    report = render(data)
    print(report)
    if args.write:
        Path(args.write).write_text(report + "\n")
        log(f"wrote {args.write}")
    if args.json:
        raw = {
            "meta": data.meta,
            "sizes": dataclasses.asdict(sizes),
            "values": data.values,
            "errors": data.errors,
            "versions": data.versions,
            "targets": target_rows(data),
        }
        Path(args.json).write_text(json.dumps(raw, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
