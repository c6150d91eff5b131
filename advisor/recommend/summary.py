"""Numbers of the recommendation report: rank correlation, Pareto front (report.md, the plot and
the CSV are rendered by `advisor.report`)."""

from __future__ import annotations

from collections.abc import Sequence

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
