"""Numbers and text of the recommendation report: rank correlation, Pareto front, report.md."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def _ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks (ties share the mean of their positions), 1-based."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=float)
    ranks[order] = np.arange(1, len(x) + 1, dtype=float)
    for v in np.unique(x):
        same = x == v
        if same.sum() > 1:
            ranks[same] = ranks[same].mean()
    return ranks


def spearman(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Spearman's rank correlation of two equal-length samples; None when undefined (fewer
    than 3 pairs, or a constant sample)."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(x) != len(y):
        raise ValueError(f"spearman: {len(x)} vs {len(y)} values")
    if len(x) < 3:
        return None
    rx, ry = _ranks(x), _ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return None
    return float(np.corrcoef(rx, ry)[0, 1])


def pareto_front(points: Sequence[tuple[str, float, float]]) -> list[str]:
    """Labels of the (label, size, kl) points no other point beats on both axes, by size."""
    front = []
    for label, size, kl in sorted(points, key=lambda p: (p[1], p[2])):
        if not any((s <= size and k <= kl) and (s, k) != (size, kl) for _, s, k in points):
            front.append(label)
    return front


def _mb(v: float | None) -> str:
    return "-" if v is None else f"{v / 1e6:.2f} MB"


def _num(v: float | None, fmt: str = "{:.4f}") -> str:
    return "-" if v is None else fmt.format(v)


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1e3:.0f} ms"


def render_markdown(rep: dict[str, Any]) -> str:
    """report.md: what to deploy first, then every candidate."""
    pick = rep["pick"]
    c = next(x for x in rep["candidates"] if x["label"] == pick["label"])
    t = rep["targets"]
    lines = [
        f"# Recommendation: {pick['label']} ({rep['model']['name']})",
        "",
        f"**Deploy** `{pick['label']}` ({c['kind']}) for {rep['hardware']['name']}.",
        "",
        f"Serve: `{rep['serve']['command']}` (from this directory).",
        "",
        f"Why: {pick['reason']}",
        "",
        "| measured | value |",
        "| --- | --- |",
        f"| file size | {_mb(c['size_measured'])} ({c['size_measured']:,} bytes) |",
        f"| mean KL vs F16 reference | {_num(c['kl_measured'])} nats |",
        f"| top-1 agreement | {_num(c.get('top1_measured'), '{:.3f}')} |",
        f"| p95 request latency | {_ms(c['p95']['value'])} ({c['p95']['origin']}) |",
        f"| memory | {_mb(c['memory']['value'])} ({c['memory']['origin']}: "
        f"{c['memory']['what']}) |",
        "",
        "Targets: " + ", ".join(f"{k}={v}" for k, v in t.items()
                                if k not in ("version", "workload") and v is not None)
        + f"; workload {t['workload']}.",
        "",
        "## Candidates",
        "",
        "| label | kind | size (pred) | size (meas) | surrogate KL | mean KL (meas) | p95 | "
        "memory | meets targets | Pareto |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    front = set(rep["pareto_front"])
    for x in rep["candidates"]:
        lines.append(
            f"| {x['label']} | {x['kind']} | {_mb(x['size_predicted'])} | "
            f"{_mb(x['size_measured'])} | {_num(x['surrogate_kl'])} | {_num(x['kl_measured'])} | "
            f"{_ms(x['p95']['value'])} ({x['p95']['origin']}) | {_mb(x['memory']['value'])} "
            f"({x['memory']['origin']}) | "
            f"{'yes' if not x['violations'] else '; '.join(x['violations'])} | "
            f"{'*' if x['label'] in front else ''} |")
    rho = rep["surrogate_spearman"]
    lines += [
        "",
        f"Surrogate vs measured KL, Spearman rank correlation: {_num(rho, '{:.3f}')} "
        f"over {len(rep['candidates'])} candidates.",
        "",
        "## Stage times",
        "",
        "| stage | seconds |",
        "| --- | --- |",
        *[f"| {k} | {v:.1f} |" for k, v in rep["stage_seconds"].items()],
        "",
    ]
    return "\n".join(lines)
