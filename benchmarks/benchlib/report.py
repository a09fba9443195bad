"""Collect worker results across repetitions and render the markdown report."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from .common import WORKLOADS, Sizes
from .registry import Backend, Contender

#: Facts of the prepared database left out of the report's "database" column (the path or
#: name differs in every repetition; the server is described once in the header).
_NOT_SHOWN = frozenset({"path", "host", "port", "user", "database"})


@dataclass
class Collected:
    """Every repetition's numbers, errors and versions, keyed by contender."""

    backend: Backend
    contenders: list[Contender]
    sizes: Sizes
    reps: int
    meta: dict[str, str] = field(default_factory=dict)
    values: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    capped: dict[str, set[str]] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)
    versions: dict[str, dict[str, str]] = field(default_factory=dict)
    targets_info: dict[str, str] = field(default_factory=dict)

    def error(self, contender: str, message: str) -> None:
        """Record an error message once per contender."""
        messages = self.errors.setdefault(contender, [])
        if message not in messages:
            messages.append(message)

    def add(self, contender: str, payload: dict[str, Any]) -> None:
        """Merge one worker's result payload."""
        if payload.get("versions"):
            self.versions[contender] = payload["versions"]
        if payload.get("target"):
            self.targets_info[contender] = ", ".join(
                f"{k}={v}" for k, v in payload["target"].items() if k not in _NOT_SHOWN
            )
        if payload.get("fatal"):
            self.error(contender, f"worker: {payload['fatal']}")
        for key, result in payload.get("results", {}).items():
            if "error" in result:
                self.error(contender, f"{key}: {result['error']}")
                self.values.setdefault(contender, {}).setdefault(key, [])
                continue
            self.values.setdefault(contender, {}).setdefault(key, []).append(
                float(result["ops_per_s"])
            )
            if result.get("capped"):
                self.capped.setdefault(contender, set()).add(key)

    def median(self, contender: str, key: str) -> float | None:
        """Return the median ops/s of ``contender``'s ``key``, or ``None`` if never measured."""
        samples = self.values.get(contender, {}).get(key, [])
        return statistics.median(samples) if samples else None

    def keys(self, contender: str, workload: str) -> list[str]:
        """Return ``contender``'s variant keys for ``workload`` in measurement order."""
        prefix = workload + "/"
        return [k for k in self.values.get(contender, {}) if k.startswith(prefix)]


def _num(value: float | None) -> str:
    """Format an ops/s figure."""
    if value is None:
        return "n/a"
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def _ratio(a: float | None, b: float | None) -> str:
    """Format ``a / b`` as ``1.23x``."""
    if a is None or b is None or b == 0:
        return "n/a"
    ratio = a / b
    return f"{ratio:.2f}x" if ratio >= 0.1 else f"{ratio:.2g}x"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Render a markdown table."""
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return out


def _variant(key: str) -> str:
    """Return the variant part of a ``workload/variant`` key."""
    return key.split("/", 1)[1]


def target_rows(data: Collected) -> list[tuple[str, str, str, str]]:
    """Evaluate the backend's targets: (description, measured, required, verdict) tuples."""
    backend = data.backend
    subject = backend.subject
    present = {c.key for c in data.contenders}
    titles = {w.key: w.title.split(")", 1)[0] + ")" for w in WORKLOADS}
    out: list[tuple[str, str, str, str]] = []
    for t in backend.targets:
        if subject not in present or t.other not in present:
            continue
        label = backend.contender(t.other).label
        desc = (
            f"{titles.get(t.workload, t.workload)} {subject} {t.variant} vs "
            f"{label} {t.other_variant}"
        )
        mine = data.median(subject, f"{t.workload}/{t.variant}")
        theirs = data.median(t.other, f"{t.workload}/{t.other_variant}")
        if mine is None or theirs is None or theirs == 0:
            out.append((desc, "n/a", f">= {t.minimum:g}x", "N/A"))
            continue
        ratio = mine / theirs
        verdict = "PASS" if ratio >= t.minimum else "MISS"
        out.append((desc, f"{ratio:.2f}x", f">= {t.minimum:g}x", verdict))
    return out


def render(data: Collected) -> str:
    """Render the whole report as markdown."""
    backend = data.backend
    sizes = data.sizes
    subject = backend.subject
    baseline = backend.baseline
    keys = {c.key for c in data.contenders}
    labels = {c.key: c.label for c in data.contenders}
    lines = [f"# {backend.title} benchmark: {subject} vs contenders", ""]
    for name, text in data.meta.items():
        lines.append(f"- {name}: {text}")
    lines.append(
        f"- repetitions: {data.reps}, interleaved (each repetition runs every contender once, "
        "in the order below), one fresh process and database per contender per "
        "repetition; every figure is the median over repetitions"
    )
    lines.append(
        "- ratios: `vs <baseline>` = this row / the baseline's first variant on the same "
        f"workload; `{subject} <variant> / this` = {subject}'s median / this row's median "
        "(above 1.00x means aiodatabases is faster)"
    )
    lines.append("")
    lines.append("## Contenders")
    lines.append("")
    rows = []
    for c in data.contenders:
        versions = data.versions.get(c.key, {})
        shown = ", ".join(f"{k} {v}" for k, v in versions.items()) or "n/a"
        extra = data.targets_info.get(c.key, "")
        rows.append([c.key, c.label, shown, extra])
    lines += _table(["key", "contender", "versions", "database"], rows)
    lines.append("")

    any_capped = False
    for workload in WORKLOADS:
        present = [c for c in data.contenders if data.keys(c.key, workload.key)]
        if not present:
            continue
        lines.append("## " + workload.title.format(**vars(sizes)))
        lines.append("")
        base_keys = data.keys(baseline, workload.key) if baseline in keys else []
        base_key = base_keys[0] if base_keys else None
        base_value = data.median(baseline, base_key) if base_key else None
        subject_keys = data.keys(subject, workload.key) if subject in keys else []
        header = ["contender", "variant", f"median {workload.unit}", "min - max", "reps"]
        if base_key:
            header.append(f"vs {baseline} {_variant(base_key)}")
        header += [f"{subject} {_variant(k)} / this" for k in subject_keys]
        rows = []
        for c in present:
            for key in data.keys(c.key, workload.key):
                samples = data.values[c.key][key]
                value = data.median(c.key, key)
                capped = key in data.capped.get(c.key, set())
                any_capped = any_capped or capped
                spread = f"{_num(min(samples))} - {_num(max(samples))}" if samples else "error"
                row = [
                    labels[c.key],
                    _variant(key),
                    _num(value) + (" *" if capped else ""),
                    spread,
                    f"{len(samples)}/{data.reps}",
                ]
                if base_key:
                    row.append(_ratio(value, base_value))
                row += [_ratio(data.median(subject, k), value) for k in subject_keys]
                rows.append(row)
        lines += _table(header, rows)
        lines.append("")
    if any_capped:
        lines.append(
            f"`*` stopped early at the per-variant time budget ({sizes.budget_s:g}s): the rate is "
            "over the operations completed in that time."
        )
        lines.append("")

    targets = target_rows(data)
    if targets:
        lines.append("## Targets")
        lines.append("")
        lines += _table(
            ["target", "measured", "required", "result"], [list(row) for row in targets]
        )
        passed = sum(1 for row in targets if row[3] == "PASS")
        lines.append("")
        lines.append(f"{passed}/{len(targets)} targets met.")
        lines.append("")

    if data.errors:
        lines.append("## Errors")
        lines.append("")
        for key, messages in data.errors.items():
            for message in messages:
                first = message.strip().splitlines()[0] if message.strip() else message
                lines.append(f"- {labels.get(key, key)}: {first}")
        lines.append("")
    if backend.notes:
        lines.append("## Notes")
        lines.append("")
        lines += [f"- {note}" for note in backend.notes]
        lines.append("")
    return "\n".join(lines)
