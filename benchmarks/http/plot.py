"""Draw the HTTP benchmark's results (``results-http.json``) as one PNG per backend.

Run by ``run.py --write DIR`` in the http-main environment (it has matplotlib); writes
``DIR/http-<backend>.png``: requests/s per scenario and contender (bars: medians, whiskers:
min-max over repetitions) above p50 and p99 latency.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

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


def main() -> None:
    data_path = Path(sys.argv[1])
    run = json.loads(data_path.read_text())
    for backend, summary in run["summary"].items():
        print(f"wrote {draw(backend, summary, data_path.parent)}")


if __name__ == "__main__":
    main()
