"""Draw the HTTP benchmark's results, or a held load's, as PNG.

``plot.py results-http.json`` (run by ``run.py --write DIR`` in the http-main environment, which
has matplotlib) writes ``DIR/http-<backend>.png``: requests/s per scenario and contender (bars:
medians, whiskers: min-max over repetitions) above p50 and p99 latency.

``plot.py held-load.json [out.png]`` (run by ``held_load.py --plot``) draws the server's
resident memory over the run, with the warm-up and the growth bar, above the requests answered
each second.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

ORDER = ("databases09", "aiodatabases", "sqlalchemy", "raw_fastapi", "raw_starlette", "notes")
LABELS = {
    "databases09": "FastAPI + databases 0.9",
    "aiodatabases": "FastAPI + aiodatabases",
    "sqlalchemy": "FastAPI + SQLAlchemy async",
    "raw_fastapi": "FastAPI + raw driver",
    "raw_starlette": "Starlette + raw driver + orjson",
    "notes": "full notes service",
}
SCENARIOS = ("get", "list", "create", "search")


def draw(backend: str, summary: dict[str, dict[str, dict[str, float]]], out: Path) -> Path:
    keys = [k for k in ORDER if k in summary]
    scenarios = [s for s in SCENARIOS if any(s in summary[k] for k in keys)]
    width = 0.8 / max(1, len(keys))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 8.5))
    for i, key in enumerate(keys):
        xs, rps, low, high, p50, p99 = [], [], [], [], [], []
        for j, scenario in enumerate(scenarios):
            m = summary[key].get(scenario)
            if m is None:
                continue
            xs.append(j + (i - (len(keys) - 1) / 2) * width)
            rps.append(m["rps"])
            low.append(m["rps"] - m["rps_min"])
            high.append(m["rps_max"] - m["rps"])
            p50.append(m["p50_ms"])
            p99.append(m["p99_ms"])
        color = f"C{ORDER.index(key)}"
        top.bar(xs, rps, width, yerr=[low, high], capsize=2, label=LABELS[key], color=color)
        bottom.bar(xs, p99, width, color=color, alpha=0.45)
        bottom.bar(xs, p50, width, color=color)
    for axis in (top, bottom):
        axis.set_xticks(range(len(scenarios)), scenarios)
        axis.grid(axis="y", alpha=0.3)
    top.set_ylabel("requests/s (median, min-max)")
    top.set_title(f"Notes routes over HTTP on {backend}: uvicorn, 1 worker, wrk -c64")
    top.legend(fontsize=8, ncol=2)
    bottom.set_yscale("log")
    bottom.set_ylabel("latency ms, log scale: p50 (solid), p99 (light)")
    fig.tight_layout()
    path = out / f"http-{backend}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def draw_held(result: dict[str, Any], out: Path) -> Path:
    """The server's RSS over a held load above the requests answered each second."""
    series = result["memory_series_kib"]
    memory = result["memory"]
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(11, 7), sharex=True, gridspec_kw={"height_ratios": [3, 2]}
    )
    top.plot([t for t, _ in series], [kib / 1024 for _, kib in series], color="C0", lw=1)
    warmup = result["warmup_s"]
    top.axvspan(0, warmup, color="0.9", label=f"warm-up ({warmup:g} s), not judged")
    base = memory.get("after_warmup_kib")
    if base:
        top.axhline(base / 1024, color="C2", ls="--", lw=1, label="median RSS after warm-up")
        bar = result.get("memory_bar_pct")
        if bar is not None and bar >= 0:
            top.axhline(
                base * (1 + bar / 100) / 1024, color="C3", ls=":", lw=1, label=f"+{bar:g}% bar"
            )
    top.set_ylabel("server RSS, MiB")
    top.grid(alpha=0.3)
    top.legend(fontsize=8, loc="lower right")
    verdict = "PASS" if result["passed"] else "FAIL"
    top.set_title(
        f"Held load on {result['backend']}: {result['clients']} clients, "
        f"{result['requests']:,} requests, {result['errors']} errors, {result['lost']} lost, "
        f"RSS {memory.get('growth_pct')}% after warm-up: {verdict}",
        fontsize=10,
    )
    per_second = result["requests_per_second_series"]
    bottom.plot(range(len(per_second)), per_second, color="C1", lw=0.8)
    bottom.set_ylabel("requests answered per second")
    bottom.set_xlabel("seconds since the load started")
    bottom.set_ylim(bottom=0)
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main() -> None:
    data_path = Path(sys.argv[1])
    data = json.loads(data_path.read_text())
    if "memory_series_kib" in data:
        out = Path(sys.argv[2]) if len(sys.argv) > 2 else data_path.with_suffix(".png")
        print(f"wrote {draw_held(data, out)}")
        return
    for backend, summary in data["summary"].items():
        print(f"wrote {draw(backend, summary, data_path.parent)}")


if __name__ == "__main__":
    main()
