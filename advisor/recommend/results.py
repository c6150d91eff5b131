"""Each realized candidate measured and held against the targets: `CandidateResult`.

Size and KL are measured; memory is measured (peak RSS of the bench child above its interpreter
baseline) when the target is this CPU host and the candidate was benched, else predicted for the
target; p95 latency is measured only when the target is this host, else the predicted request
latency. Every figure says which (advisor.figures.Figure with `what`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from advisor.figures import BYTES, SECONDS, Figure, Origin
from advisor.measurement import BenchResult, Measurement, QualityResult
from advisor.recommend.budget import memory_limits
from advisor.recommend.candidates import Realized
from advisor.recommend.config import EVAL_WINDOW, RecommendConfig
from advisor.targets import Targets

_NOT_BENCHED = (" (not benched: a candidate of lower KL met every target, or this one's size or "
                "KL missed one; --bench-all benches every candidate)")
_BENCH_KEYS = ("ttft", "per_token", "latency_p95", "peak_rss", "baseline_rss")


@dataclass(frozen=True)
class Violation:
    """A target a candidate misses."""

    target: str
    """"size", "memory", "p95" or "KL"."""
    flag: str
    """The flag as the user wrote it, e.g. "--max-size 93510208"."""
    text: str

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class CandidateResult:
    """One realized candidate with its measurements and predictions."""

    realized: Realized
    measurement: Measurement
    """What was measured: quality always, the bench when it ran (advisor.measurement)."""
    memory: Figure
    p95: Figure
    violations: tuple[Violation, ...]

    @property
    def label(self) -> str:
        return self.realized.candidate.label

    @property
    def quality(self) -> QualityResult:
        assert self.measurement.quality is not None  # judge() always has it
        return self.measurement.quality

    @property
    def bench(self) -> BenchResult | None:
        return self.measurement.bench

    @property
    def kind(self) -> str:
        return self.realized.candidate.kind

    @property
    def size(self) -> int:
        return int(self.realized.report["size"]["value"])

    @property
    def kl(self) -> float:
        return float(self.quality.mean_kl.value)

    @property
    def feasible(self) -> bool:
        return not self.violations

    def misses(self, target: str) -> bool:
        return any(v.target == target for v in self.violations)

    def to_dict(self) -> dict[str, Any]:
        """The row of report.json's `candidates` (schema: $defs/candidate)."""
        report, est = self.realized.report, self.realized.report["estimate"]
        plan = report.get("plan")
        return {
            # relative to the directory that holds the artifact (`<out>.candidates/<label>`):
            # a report attached to a ticket names no path of this machine
            "label": self.label, "kind": self.kind,
            "directory": f"{self.realized.directory.parent.name}/{self.realized.directory.name}",
            "plan_digest": plan.get("digest") if isinstance(plan, dict) else None,
            "size_predicted": int(est["file_size"]["value"]), "size_measured": self.size,
            "surrogate_kl": self.realized.candidate.surrogate, "kl_measured": self.kl,
            "top1_measured": self.quality.top1_agreement.value,
            "memory_predicted": est["total_memory"]["value"], "memory": self.memory.to_dict(),
            "latency_predicted": est["request_latency"]["value"], "p95": self.p95.to_dict(),
            "bench": {k: getattr(self.bench, k).value for k in _BENCH_KEYS}
            if self.bench is not None else {},
            "benched": self.bench is not None,
            "violations": [v.text for v in self.violations],
        }


def judge(r: Realized, q: QualityResult, b: BenchResult | None, host: bool, targets: Targets,
          cfg: RecommendConfig) -> CandidateResult:
    """The candidate's figures and the targets it misses; `b` None when it was not benched or
    its runtime does not run here (an HF checkpoint): memory and p95 are then predicted."""
    est = r.report["estimate"]
    device = est.get("device")
    if host and str(device or "").startswith("CPU") and b is not None:
        memory = Figure(b.peak_rss.value - b.baseline_rss.value, BYTES, Origin.MEASURED,
                        "peak RSS of the bench process above its interpreter baseline")
    else:
        memory = Figure(est["total_memory"]["value"], BYTES, Origin.PREDICTED,
                        f"weights + KV cache + runtime overhead on {device}")
    if host and b is not None:
        p95 = Figure(b.latency_p95.value, SECONDS, Origin.MEASURED,
                     f"p95 request latency over {b.n_requests} requests on this host")
    else:
        p95 = Figure(est["request_latency"]["value"], SECONDS, Origin.PREDICTED,
                     "roofline request latency on the target (not a measured p95)")
    if host and b is None and not r.candidate.is_hf:
        memory = Figure(memory.value, BYTES, memory.origin, memory.what + _NOT_BENCHED)
        p95 = Figure(p95.value, SECONDS, p95.origin, p95.what + _NOT_BENCHED)
    size, kl = int(r.report["size"]["value"]), float(q.mean_kl.value)
    out: list[Violation] = []
    if targets.max_size_bytes is not None and size > targets.max_size_bytes:
        flag = cfg.flag("max-size", targets.max_size_bytes)
        out.append(Violation("size", flag, f"size {size:,} > {flag}"))
    for key, limit in memory_limits(targets):
        if memory.value > limit:
            flag = cfg.flag(key, limit)
            out.append(Violation("memory", flag, f"memory {int(memory.value):,} "
                                                 f"({memory.origin.value}) > {flag}"))
    if targets.p95_s is not None and p95.value > targets.p95_s:
        flag = cfg.flag("p95", targets.p95_s)
        out.append(Violation("p95", flag, f"p95 {p95.value:.3f}s ({p95.origin.value}) > {flag}"))
    if targets.max_kld is not None and kl > targets.max_kld:
        flag = cfg.flag("max-kld", targets.max_kld)
        out.append(Violation("KL", flag, f"KL {kl:.4f} > {flag}"))
    plan = r.report.get("plan")
    digest = str(plan.get("digest", "")) if isinstance(plan, dict) else ""
    return CandidateResult(r, Measurement(r.candidate.label, digest, q, b), memory, p95,
                           tuple(out))


def measure_candidates(realized: list[Realized], evaluate: Callable[[Realized], QualityResult],
                       bench: Callable[[Realized], BenchResult], host: bool, targets: Targets,
                       cfg: RecommendConfig) -> list[CandidateResult]:
    """KL of every realized candidate, then benches in pick order until one meets every target.

    The pick is the lowest measured KL (then fewest bytes) among the candidates meeting every
    target, so a candidate after the first one that meets them all cannot be picked whatever its
    bench says: it is not benched (its memory and p95 are the target's predictions, labelled so,
    and `benched` is false) unless `cfg.bench_all`. A candidate whose measured size or KL already
    misses a target is not benched either. A measurement already in the artifact's report for
    these settings is reused. On this host with no p95 or memory target that is one bench, the
    pick's (measured: 4 of 5 benches skipped, ~24 s each on the embedded model)."""
    scored = []
    for r in realized:
        q = r.report.get("measurements", {}).get("quality")
        if q and q.get("n_windows") == cfg.eval_windows and q.get("window") == EVAL_WINDOW:
            scored.append((r, QualityResult.from_dict(q)))
        else:
            scored.append((r, evaluate(r)))
    order = sorted(range(len(scored)), key=lambda i: (float(scored[i][1].mean_kl.value),
                                                      int(scored[i][0].report["size"]["value"])))
    wl = targets.workload.to_dict()
    results: list[CandidateResult | None] = [None] * len(scored)
    found = False
    for i in order:
        r, q = scored[i]
        b = None
        stored = r.report.get("measurements", {}).get("bench")
        if stored and stored.get("workload") == wl and stored.get("n_requests") == \
                cfg.bench_requests:
            b = BenchResult.from_dict(stored)
        static = judge(r, q, None, host, targets, cfg)
        wanted = cfg.bench_all or not (found or static.misses("size") or static.misses("KL"))
        if r.candidate.is_hf:
            b = None  # vLLM does not run here: memory and p95 are predicted for the target
        elif b is None and wanted:
            b = bench(r)
        result = judge(r, q, b, host, targets, cfg)
        results[i] = result
        found = found or result.feasible
    return [x for x in results if x is not None]
