"""Hold a mixed load on the full notes service and check that nothing breaks or leaks.

```
python benchmarks/http/held_load.py --duration 600                 # PostgreSQL (default)
python benchmarks/http/held_load.py --backend sqlite --duration 60
```

It starts the notes service (uvicorn, one worker, no access log) on a fresh database, gives
every client its own user and pre-issued bearer token (when the service has login routes),
seeds each client's notes, then runs ``--clients`` concurrent clients (default 64) for
``--duration`` seconds on a mix of 60% get, 15% list, 10% search, 10% create and 5% update or
delete (half each; with ``If-Match``). The load generator is httpx's ``AsyncClient`` (HTTP/1.1,
keep-alive, one connection per client) in this process, one asyncio task per client.

It reports errors (any unexpected status or exception), p50/p99/max latency per operation, the
server's resident memory over time, and at the end checks that every acknowledged note exists
at (at least) its acknowledged version and that every acknowledged delete is gone (read from
the database directly), that the service's pool has no connection checked out, and that the
database holds no connection in a transaction: ``pg_stat_activity`` on PostgreSQL (no session
``active`` or ``idle in transaction``), on SQLite a ``wal_checkpoint(TRUNCATE)`` that no
reader blocks and a write lock taken at once.

Exit code 0 when every criterion holds (0 errors, 0 lost, no leak, memory growth after
warm-up within ``--memory-bar`` percent), 1 otherwise. Run it with an interpreter that has
httpx and the project installed with ``.[notes,postgresql]`` (the dev ``.venv`` has both).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common

#: The operation mix, in percent.
MIX = (("get", 60), ("list", 15), ("search", 10), ("create", 10), ("update_or_delete", 5))

#: A client keeps at least this many notes of its own: below it, update_or_delete updates.
KEEP = 10


@dataclass
class ClientState:
    """One client: its token, its notes (id -> acknowledged version), its deletes."""

    index: int
    token: str | None
    notes: dict[int, int]
    deleted: set[int] = field(default_factory=set)
    rng: random.Random = field(default_factory=random.Random)


@dataclass
class Stats:
    """Everything the clients observed."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k, _ in MIX})
    per_second: list[int] = field(default_factory=list)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)

    def error(self, message: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 20:
            self.error_samples.append(message)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by nearest rank; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


async def client_loop(
    http: Any, state: ClientState, stats: Stats, deadline: float, started: float
) -> None:
    """Run one client's requests until ``deadline``."""
    headers = {"Authorization": f"Bearer {state.token}"} if state.token else {}
    names = [name for name, _ in MIX]
    weights = [weight for _, weight in MIX]
    rng = state.rng
    while time.monotonic() < deadline:
        op = rng.choices(names, weights)[0]
        begin = time.perf_counter()
        try:
            expected = await run_op(http, op, state, headers, rng)
        except Exception as exc:
            expected = f"{type(exc).__name__}: {exc}"
        elapsed = time.perf_counter() - begin
        stats.latencies[op].append(elapsed)
        second = int(time.monotonic() - started)
        while len(stats.per_second) <= second:
            stats.per_second.append(0)
        stats.per_second[second] += 1
        if expected is not None:
            stats.error(f"{op}: {expected}")


async def run_op(
    http: Any, op: str, state: ClientState, headers: dict[str, str], rng: random.Random
) -> str | None:
    """Send one operation; return None when the answer is the expected one, else why not."""
    if op == "get":
        note_id = rng.choice(list(state.notes))
        response = await http.get(f"/api/notes/{note_id}", headers=headers)
        if response.status_code != 200:
            return f"GET {note_id} -> {response.status_code} {response.text[:200]}"
        if response.json()["version"] < state.notes[note_id]:
            return f"GET {note_id}: version went back"
        return None
    if op in ("list", "search"):
        params = {"limit": "20"}
        if op == "search":
            params["q"] = rng.choice(common.VOCABULARY)
        response = await http.get("/api/notes", params=params, headers=headers)
        if response.status_code != 200:
            return f"list {params} -> {response.status_code} {response.text[:200]}"
        return None
    if op == "create":
        body = {
            "title": common.note_text(rng, 3),
            "body": common.note_text(rng, 20),
            "tags": [rng.choice(common.VOCABULARY)],
        }
        response = await http.post("/api/notes", json=body, headers=headers)
        if response.status_code != 201:
            return f"POST -> {response.status_code} {response.text[:200]}"
        note = response.json()
        state.notes[int(note["id"])] = int(note["version"])
        return None
    note_id = rng.choice(list(state.notes))
    version = state.notes[note_id]
    match = {**headers, "If-Match": f'"{note_id}.{version}"'}
    if len(state.notes) <= KEEP or rng.random() < 0.5:
        response = await http.patch(
            f"/api/notes/{note_id}", json={"completed": rng.random() < 0.5}, headers=match
        )
        if response.status_code != 200:
            return f"PATCH {note_id} -> {response.status_code} {response.text[:200]}"
        state.notes[note_id] = int(response.json()["version"])
        return None
    # Forget it first: from the moment the request goes out the note may be gone.
    del state.notes[note_id]
    response = await http.delete(f"/api/notes/{note_id}", headers=match)
    if response.status_code != 204:
        state.notes[note_id] = version
        return f"DELETE {note_id} -> {response.status_code} {response.text[:200]}"
    state.deleted.add(note_id)
    return None


async def sample_memory(
    pid: int,
    samples: list[tuple[float, int]],
    live: list[dict[str, Any]],
    base: str,
    started: float,
) -> None:
    """Record the server's RSS (KiB) once a second, and its live memory (``/_probe/memory``)
    every 10 s, until cancelled."""
    for tick in itertools.count():
        value = common.rss_kib(pid)
        if value is not None:
            samples.append((time.monotonic() - started, value))
        if tick % 10 == 0:
            try:
                status, answer = await asyncio.to_thread(
                    common.request_json, "GET", base + "/_probe/memory", timeout=10.0
                )
            except OSError:  # the server is gone or stuck: the load's own checks say so
                status, answer = 0, None
            if status == 200 and isinstance(answer, dict):
                live.append({"t": round(time.monotonic() - started, 1)} | answer)
        await asyncio.sleep(1.0)


async def hold(
    base: str, clients: list[ClientState], duration: float, pid: int
) -> tuple[Stats, list[tuple[float, int]], list[dict[str, Any]], float]:
    """Run every client for ``duration`` seconds; return stats, RSS samples, live-memory
    samples and wall time."""
    import httpx

    stats = Stats()
    memory: list[tuple[float, int]] = []
    live: list[dict[str, Any]] = []
    # Idle connections are dropped before uvicorn's 5 s keep-alive timeout closes them, so a
    # request never races the server closing its connection.
    limits = httpx.Limits(
        max_connections=len(clients), max_keepalive_connections=len(clients), keepalive_expiry=2.0
    )
    timeout = httpx.Timeout(60.0)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=timeout) as http:
        started = time.monotonic()
        deadline = started + duration
        sampler = asyncio.create_task(sample_memory(pid, memory, live, base, started))
        try:
            await asyncio.gather(
                *(client_loop(http, state, stats, deadline, started) for state in clients)
            )
        finally:
            sampler.cancel()
            try:
                await sampler
            except asyncio.CancelledError:
                pass
        wall = time.monotonic() - started
    return stats, memory, live, wall


def stored_versions(backend: str, url: str) -> dict[int, int]:
    """Read every note's id and version straight from the database."""
    if backend == "sqlite":
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            return dict(conn.execute("SELECT id, version FROM notes").fetchall())
    return {int(i): int(v) for i, v in common.pg_query(url, "SELECT id, version FROM notes")}


def check_database_idle(backend: str, url: str) -> tuple[list[str], dict[str, Any]]:
    """Problems with the database's sessions after the load (an empty list: none)."""
    problems: list[str] = []
    if backend == "sqlite":
        with sqlite3.connect(url.removeprefix("sqlite:///"), timeout=0.5) as conn:
            busy, wal_frames, checkpointed = conn.execute(
                "PRAGMA wal_checkpoint(TRUNCATE)"
            ).fetchone()
            if busy:
                problems.append(
                    f"wal_checkpoint(TRUNCATE) was blocked ({checkpointed}/{wal_frames} "
                    "frames): a connection still holds a read or write transaction"
                )
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("ROLLBACK")
            except sqlite3.OperationalError as exc:
                problems.append(f"no write lock within 0.5 s: {exc}")
        return problems, {"wal_checkpoint_busy": busy}
    rows = common.pg_query(
        url,
        "SELECT state, count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid() GROUP BY state",
    )
    states = {state or "(none)": int(count) for state, count in rows}
    for state, count in states.items():
        if state != "idle":
            problems.append(f"{count} session(s) {state!r} after the load")
    return problems, {"pg_stat_activity": states}


def memory_summary(
    samples: list[tuple[float, int]], warmup: float, duration: float
) -> dict[str, Any]:
    """RSS after warm-up vs at the end, as medians of 10-second windows, and the maximum."""
    after = [(t, v) for t, v in samples if t >= warmup]
    if not after:
        return {"samples": len(samples)}
    first = [v for t, v in after if t < warmup + 10] or [after[0][1]]
    last = [v for t, v in after if t >= duration - 10] or [after[-1][1]]
    base, end = statistics.median(first), statistics.median(last)
    peak = max(v for _, v in after)
    return {
        "samples": len(samples),
        "start_kib": samples[0][1],
        "after_warmup_kib": base,
        "end_kib": end,
        "max_kib": peak,
        "growth_pct": round((end - base) / base * 100, 2),
        "max_growth_pct": round((peak - base) / base * 100, 2),
    }


def prepare_database(args: argparse.Namespace, workdir: Path) -> str:
    """Create a fresh database for the run and return its URL."""
    if args.backend == "sqlite":
        for suffix in ("", "-wal", "-shm", ".secret"):
            (workdir / f"notes.db{suffix}").unlink(missing_ok=True)
        return f"sqlite:///{workdir / 'notes.db'}"
    return common.pg_recreate_database(args.pg_admin_url, args.pg_database)


def main(argv: list[str] | None = None) -> int:
    """Run the held load; return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--notes-per-client", type=int, default=50, help="seeded notes")
    parser.add_argument(
        "--warmup", type=float, help="seconds excluded from the memory growth (default: 1/5)"
    )
    parser.add_argument(
        "--memory-bar",
        type=float,
        default=5.0,
        help="largest accepted RSS growth after warm-up, percent (negative: not a criterion)",
    )
    parser.add_argument("--pg-admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--pg-database", default="notes_held_load")
    parser.add_argument("--python", default=sys.executable, help="interpreter of the server")
    parser.add_argument(
        "--source",
        type=Path,
        help="run the service from this checkout's src/ (e.g. a git worktree of a commit)",
    )
    parser.add_argument("--json", type=Path, help="also write the full result as JSON here")
    parser.add_argument(
        "--plot",
        type=Path,
        help="also draw memory and requests/s over the run as this PNG (matplotlib from the "
        "HTTP benchmark's http-main environment, built on first use)",
    )
    parser.add_argument("--workdir", type=Path, help="keep the database and logs here")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    warmup = args.warmup if args.warmup is not None else args.duration / 5

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="notes-held-load-"))
    workdir.mkdir(parents=True, exist_ok=True)
    url = prepare_database(args, workdir)
    common.log(f"database {url.rsplit('@', 1)[-1]}; logs in {workdir}")
    source = common.source_env(args.source)
    common.migrate_notes(args.python, url, workdir / "migrate.log", env=source)
    env = common.notes_env(url, token_seconds=min(86_400, int(args.duration) + 3600)) | source
    server = common.start_server(
        args.python,
        "notes_probe:create_app",
        factory=True,
        env=env,
        log_path=workdir / "server.log",
        app_dir=common.APPS,
        ready_path="/health/ready",
    )
    result: dict[str, Any] = {
        "backend": args.backend,
        "clients": args.clients,
        "duration_s": args.duration,
        "client": "httpx.AsyncClient, HTTP/1.1 keep-alive, one asyncio task per client",
    }
    try:
        auth = common.has_auth(server.base)
        result["auth"] = auth
        rng = random.Random(args.seed)
        setup_started = time.monotonic()
        seeds = [rng.random() for _ in range(args.clients)]

        def setup(index: int) -> ClientState:
            email = f"load-{index}@example.com"
            token = common.issue_token(server.base, email) if auth else None
            own = random.Random(seeds[index])
            ids = common.seed_notes(server.base, token, args.notes_per_client, own)
            return ClientState(index, token, dict.fromkeys(ids, 1), rng=own)

        # Password hashing dominates the setup; the server hashes off its event loop, so a
        # few logins at once use both cores.
        with ThreadPoolExecutor(max_workers=4) as pool:
            clients = list(pool.map(setup, range(args.clients)))
        common.analyze(url)  # planner statistics of the seeded tables, as autovacuum keeps them
        common.log(
            f"{args.clients} clients ready ({'with tokens' if auth else 'no auth routes'}), "
            f"{args.clients * args.notes_per_client} notes seeded in "
            f"{time.monotonic() - setup_started:.1f}s; loading for {args.duration:.0f}s ..."
        )
        stats, memory, live, wall = asyncio.run(
            hold(server.base, clients, args.duration, server.pid)
        )
        if server.process.poll() is not None:
            stats.error(f"the server exited with {server.process.returncode}")
        time.sleep(1.0)

        status, pool = common.request_json("GET", server.base + "/_probe/pool")
        leaks: list[str] = []
        if status != 200 or not isinstance(pool, dict):
            leaks.append(f"pool probe answered {status}")
        elif pool.get("in_use"):
            leaks.append(f"{pool['in_use']} connection(s) still checked out of the pool")
        db_problems, db_state = check_database_idle(args.backend, url)
        leaks += db_problems

        stored = stored_versions(args.backend, url)
        lost = [
            (note_id, version)
            for state in clients
            for note_id, version in state.notes.items()
            if stored.get(note_id, -1) < version
        ]
        resurrected = [i for state in clients for i in state.deleted if i in stored]
    finally:
        exit_code = server.stop()

    latencies: dict[str, Any] = {}
    everything: list[float] = []
    for op, values in stats.latencies.items():
        everything += values
        latencies[op] = _latency(values)
    latencies["all"] = _latency(everything)
    mem = memory_summary(memory, warmup, wall)
    total = len(everything)
    result.update(
        {
            "requests": total,
            "requests_per_s": round(total / wall, 1),
            "errors": stats.errors,
            "error_samples": stats.error_samples,
            "latency_ms": latencies,
            "memory": mem,
            "memory_series_kib": [(round(t, 1), v) for t, v in memory],
            "live_memory_series": live,
            "requests_per_second_series": stats.per_second,
            "acknowledged_notes": sum(len(state.notes) for state in clients),
            "acknowledged_deletes": sum(len(state.deleted) for state in clients),
            "lost": len(lost),
            "lost_samples": lost[:20],
            "deleted_but_present": len(resurrected),
            "pool": pool,
            "database": db_state,
            "leaks": leaks,
            "server_exit_code": exit_code,
            "warmup_s": warmup,
            "memory_bar_pct": args.memory_bar,
        }
    )
    failures = []
    if stats.errors:
        failures.append(f"{stats.errors} errors")
    if lost or resurrected:
        failures.append(f"{len(lost)} notes lost, {len(resurrected)} deleted notes present")
    failures += leaks
    growth = mem.get("growth_pct")
    if args.memory_bar >= 0 and (growth is None or growth > args.memory_bar):
        failures.append(f"memory grew {growth}% after warm-up (bar {args.memory_bar}%)")
    result["failures"] = failures
    result["passed"] = not failures
    print(render(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    if args.plot:
        data_path = args.json or workdir / "held-load.json"
        if not args.json:
            data_path.write_text(json.dumps(result) + "\n")
        draw(data_path, args.plot)
    return 0 if not failures else 1


def draw(data_path: Path, png: Path) -> None:
    """Draw ``data_path``'s held load as ``png`` with the http-main environment's matplotlib."""
    import envspecs
    from benchlib import envs

    python = envs.ensure_env(
        envspecs.MAIN_ENV, common.REPO / "benchmarks" / ".envs", common.REPO, log=common.log
    )
    plot = subprocess.run(
        [str(python), str(Path(__file__).resolve().parent / "plot.py"), str(data_path), str(png)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    common.log(plot.stdout.strip() or f"plot failed: {plot.stderr[-2000:]}")


def _latency(values: list[float]) -> dict[str, float | int]:
    return {
        "count": len(values),
        "p50": round(percentile(values, 50) * 1000, 2),
        "p99": round(percentile(values, 99) * 1000, 2),
        "max": round(max(values, default=0.0) * 1000, 2),
    }


def render(result: dict[str, Any]) -> str:
    """The result as markdown."""
    lines = [
        f"Held load: {result['clients']} clients, {result['duration_s']:.0f} s, "
        f"{result['backend']}, auth {'on (pre-issued tokens)' if result['auth'] else 'absent'}; "
        f"client: {result['client']}",
        "",
        f"- requests: {result['requests']} ({result['requests_per_s']}/s), "
        f"errors: {result['errors']}",
        f"- acknowledged notes: {result['acknowledged_notes']}, lost: {result['lost']}; "
        f"acknowledged deletes: {result['acknowledged_deletes']}, still present: "
        f"{result['deleted_but_present']}",
        f"- pool after the load: {result['pool']}; database: {result['database']}",
        f"- leaks: {', '.join(result['leaks']) or 'none'}",
    ]
    mem = result["memory"]
    if "growth_pct" in mem:
        lines.append(
            f"- server RSS: {mem['start_kib'] / 1024:.1f} MiB at start, "
            f"{mem['after_warmup_kib'] / 1024:.1f} MiB after warm-up "
            f"({result['warmup_s']:.0f} s), {mem['end_kib'] / 1024:.1f} MiB at the end "
            f"({mem['growth_pct']:+.2f}%), max {mem['max_kib'] / 1024:.1f} MiB "
            f"({mem['max_growth_pct']:+.2f}%)"
        )
    live = result.get("live_memory_series") or []
    if len(live) >= 2:
        first, last = live[0], live[-1]
        parts = [f"Python blocks {first['python_blocks']} -> {last['python_blocks']}"]
        if "sqlite_bytes" in first:
            peak = max(sample["sqlite_peak_bytes"] for sample in live)
            parts.append(
                f"SQLite in use {first['sqlite_bytes'] / 2**20:.1f} -> "
                f"{last['sqlite_bytes'] / 2**20:.1f} MiB (peak {peak / 2**20:.1f} MiB)"
            )
        lines.append(f"- live memory, first and last sample: {'; '.join(parts)}")
    lines += ["", "| operation | count | p50 ms | p99 ms | max ms |", "|---|---|---|---|---|"]
    for op, lat in result["latency_ms"].items():
        lines.append(f"| {op} | {lat['count']} | {lat['p50']} | {lat['p99']} | {lat['max']} |")
    if result["error_samples"]:
        lines += ["", "First errors:", *(f"- {e}" for e in result["error_samples"])]
    lines += [
        "",
        "Result: " + ("PASS" if result["passed"] else "FAIL: " + "; ".join(result["failures"])),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
