"""The pick of a recommendation, and the numbers beside it: rank correlation of the surrogate
with the measured KL, the Pareto front (report.md, the plot and the CSV are rendered by
`advisor.report`). Pure functions of the measured candidates."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np

from advisor.errors import Infeasible

if TYPE_CHECKING:
    from advisor.recommend.results import CandidateResult


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


_TARGET_FLAGS = {"size": "max-size", "memory": "mem/vram", "p95": "p95", "KL": "max-kld"}


def pick(results: list[CandidateResult]
         ) -> tuple[CandidateResult, str, dict[str, Any] | None]:
    """The lowest measured KL (then fewest bytes) among the candidates meeting every target, the
    reason in words, and the pick against the best stock preset meeting them (versus_preset;
    None when there is none or they were not scored on the same windows); Infeasible (exit 3)
    when no candidate meets the targets."""
    feasible = [r for r in results if r.feasible]
    if not feasible:
        raise_infeasible(results)
    best = min(feasible, key=lambda r: (r.kl, r.size))
    reason = (f"lowest measured mean KL ({best.kl:.4f} nats) of the {len(feasible)} measured "
              "candidates meeting every target")
    preset = min((r for r in feasible if r.kind == "preset"), key=lambda r: r.kl, default=None)
    versus = None
    if preset is not None and preset is not best:
        reason += (f"; the best stock preset meeting them, {preset.label}, measures "
                   f"{preset.kl:.4f} nats at {preset.size:,} bytes")
        versus = versus_preset(best, preset)
        if versus is not None:
            reason += "; " + versus_text(versus)
    return best, reason, versus


def versus_preset(best: CandidateResult, preset: CandidateResult) -> dict[str, Any] | None:
    """The pick's KL against the preset's on the same windows: ratio and difference with their
    95% paired-bootstrap intervals, and whether the difference is resolved (report.json's
    `pick.versus_preset`). None when the two were not scored on the same windows."""
    from advisor.measure.quality.metrics import paired_comparison

    a, b = best.quality, preset.quality
    if not a.kl_windows or len(a.kl_windows) != len(b.kl_windows) or \
            (a.text_sha256, a.reference, a.window) != (b.text_sha256, b.reference, b.window):
        return None
    return {"preset": preset.label, **paired_comparison(a.kl_windows, b.kl_windows)}


def versus_text(v: dict[str, Any]) -> str:
    """One clause of the pick's reason: the ratio with its interval, and whether it is
    resolved on the windows measured."""
    lo, hi = v["ratio_ci95"]
    text = (f"the pick's KL is {v['ratio']:.2f}x the preset's (95% CI {lo:.2f}-{hi:.2f}x over "
            f"{v['n_windows']} windows)")
    if v["resolved"]:
        return text + ", a resolved difference"
    return (text + ": not resolved at this many windows (the interval of the difference "
            "includes zero); more --eval-windows narrow it")


def search_notes(info: dict[str, Any]) -> str:
    """What the pick's reason adds about the search: a relaxed embedding/head floor, a search
    that could not run (and the smallest size at which it can). Empty when neither happened."""
    notes = []
    floor = info.get("floor") or {}
    if floor.get("relaxed"):
        notes.append(f"floor relaxed: {floor['why']}")
    if info.get("search_skipped"):
        notes.append(f"the search did not run: {info['search_skipped']} (the smallest file it "
                     f"can search for is {info['smallest_searchable_file_bytes']:,} bytes)")
    return "".join(f"; {n}" for n in notes)


def raise_infeasible(results: list[CandidateResult]) -> NoReturn:
    """Infeasible naming the target most candidates miss and the nearest feasible alternative."""
    counts = Counter(v.target for r in results for v in r.violations)
    worst = max(counts, key=lambda k: counts[k])
    flag = next(v.flag for r in results for v in r.violations if v.target == worst)
    meets = [r for r in results if not r.misses(worst)]
    if worst == "KL":
        best = min(results, key=lambda r: r.kl)
        alt = (f"the best measured KL is {best.kl:.4f} ({best.label}, {best.size:,} bytes): "
               "raise --max-kld to it or allow more size")
    elif meets:
        best = min(meets, key=lambda r: r.kl)
        alt = (f"nearest alternative within {flag}: {best.label} ({best.size:,} bytes, KL "
               f"{best.kl:.4f}), which misses {'; '.join(map(str, best.violations))}")
    else:
        fig: Callable[[CandidateResult], float] = {
            "size": lambda r: float(r.size), "memory": lambda r: r.memory.value,
            "p95": lambda r: r.p95.value}[worst]
        best = min(results, key=fig)
        alt = f"nearest: {best.label} at {fig(best):,.3f} ({'; '.join(map(str, best.violations))})"
    raise Infeasible(f"no measured candidate meets {flag} ({_TARGET_FLAGS.get(worst, worst)} "
                     f"binds: {counts[worst]} of {len(results)} candidates miss it)", alt)
