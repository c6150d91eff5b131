"""`Measurement`: what a realized candidate really did on this host; every figure is *measured*.

Two halves, each produced by one stage and usable alone:
- `QualityResult` (advisor.measure.quality): KL divergence, top-1 agreement and perplexity
  against the reference, on fixed windows of the evaluation text;
- `BenchResult` (advisor.measure.latency): time to first token, per-token latency, request latency
  percentiles, decode throughput and peak resident memory under a workload.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from advisor.estimate import Workload
from advisor.figures import BYTES, SECONDS, Figure, Origin

SCHEMA_VERSION = 1

# Units of the figures below (figures.py holds the shared ones).
NATS = "nats"
FRACTION = "fraction"
PERPLEXITY = "perplexity"
TOKENS_PER_S = "tokens/s"

__all__ = [
    "BYTES", "FRACTION", "NATS", "PERPLEXITY", "SECONDS", "TOKENS_PER_S",
    "BenchResult", "Measurement", "QualityResult", "measured",
]


def measured(value: float, unit: str) -> Figure:
    """A figure measured on this run."""
    return Figure(float(value), unit, Origin.MEASURED)


def _figure_fields(obj: Any) -> list[str]:
    return [f.name for f in fields(obj) if isinstance(getattr(obj, f.name), Figure)]


def _read_figures(d: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    return {k: Figure.from_dict(d[k]) for k in names}


def _check_measured(obj: Any) -> None:
    for name in _figure_fields(obj):
        fig: Figure = getattr(obj, name)
        if fig.origin is not Origin.MEASURED:
            raise ValueError(f"{type(obj).__name__}.{name} has origin {fig.origin.value!r}; "
                             f"expected 'measured'")


def _check_version(cls: type, d: dict[str, Any]) -> None:
    if d.get("version", SCHEMA_VERSION) != SCHEMA_VERSION:
        raise ValueError(f"{cls.__name__} version {d.get('version')} != {SCHEMA_VERSION}")


@dataclass(frozen=True)
class QualityResult:
    """Candidate vs reference on the same tokens: KL(ref || cand) per scored position, summarised.

    `reference` is the reference's identity (see advisor.measure.quality.cache.file_identity);
    `window` is the window length in tokens, of which the second half is scored.
    `kl_windows` is each window's mean KL, in window order: the sample that `mean_kl.ci95` (a
    bootstrap over windows) and paired comparisons of two candidates on the same windows use.
    """

    mean_kl: Figure
    p99_kl: Figure
    top1_agreement: Figure
    perplexity: Figure
    reference_perplexity: Figure
    eval_seconds: Figure
    n_windows: int
    n_tokens: int  # scored positions
    text_sha256: str
    reference: str
    window: int
    kl_windows: tuple[float, ...] = ()
    version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        _check_measured(self)
        if self.n_windows < 1 or self.n_tokens < 1:
            raise ValueError(f"QualityResult with n_windows={self.n_windows}, "
                             f"n_tokens={self.n_tokens}; expected >= 1 each")
        object.__setattr__(self, "kl_windows", tuple(float(x) for x in self.kl_windows))
        if self.kl_windows and len(self.kl_windows) != self.n_windows:
            raise ValueError(f"QualityResult.kl_windows has {len(self.kl_windows)} values for "
                             f"n_windows={self.n_windows}")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"version": self.version}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.to_dict() if isinstance(value, Figure) else \
                list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QualityResult:
        _check_version(cls, d)
        figs = ("mean_kl", "p99_kl", "top1_agreement", "perplexity", "reference_perplexity",
                "eval_seconds")
        return cls(
            **_read_figures(d, figs),
            n_windows=int(d["n_windows"]), n_tokens=int(d["n_tokens"]),
            text_sha256=str(d["text_sha256"]), reference=str(d["reference"]),
            window=int(d["window"]), kl_windows=tuple(d.get("kl_windows", ())),
        )


@dataclass(frozen=True)
class BenchResult:
    """Latency and memory of one artifact under one workload, measured in a child process.

    - `ttft`: median time from the request's start to its first new token (prefill included);
    - `per_token`: median over requests of the mean time between new tokens after the first;
    - `latency_p50/p95/p99`: request latency (start to last token) percentiles;
    - `decode_tokens_per_s`: new tokens of all requests / wall time of the measured phase, summed
      over the concurrent streams (what serving benchmarks call output throughput);
    - `peak_rss`: the child's peak resident set (ru_maxrss): interpreter, runtime, weights, KV
      cache, buffers of all `concurrency` runners; `baseline_rss` is its resident set before any
      model was loaded, so the runtime's own share is `peak_rss - baseline_rss`;
    - `loaded_pss`: the child's proportional set size after the measured phase, runners still
      loaded: with concurrency > 1 the C runners mmap the same weights file, which RSS counts C
      times and PSS once, so this is the closer figure of what the host must hold.
    `samples` keeps the raw per-request seconds: "ttft", "per_token", "latency".
    """

    ttft: Figure
    per_token: Figure
    latency_p50: Figure
    latency_p95: Figure
    latency_p99: Figure
    decode_tokens_per_s: Figure
    peak_rss: Figure
    baseline_rss: Figure
    loaded_pss: Figure
    artifact_size: Figure
    wall_seconds: Figure
    workload: Workload
    n_requests: int
    warmup: int
    threads: int
    samples: dict[str, tuple[float, ...]] = field(default_factory=dict)
    version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        _check_measured(self)
        if self.n_requests < 1:
            raise ValueError(f"BenchResult.n_requests={self.n_requests}; expected >= 1")
        object.__setattr__(self, "samples",
                           {k: tuple(float(x) for x in v) for k, v in self.samples.items()})

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"version": self.version}
        for name in _figure_fields(self):
            out[name] = getattr(self, name).to_dict()
        out.update(workload=self.workload.to_dict(), n_requests=self.n_requests,
                   warmup=self.warmup, threads=self.threads,
                   samples={k: list(v) for k, v in self.samples.items()})
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BenchResult:
        _check_version(cls, d)
        figs = ("ttft", "per_token", "latency_p50", "latency_p95", "latency_p99",
                "decode_tokens_per_s", "peak_rss", "baseline_rss", "loaded_pss", "artifact_size",
                "wall_seconds")
        w = d["workload"]
        prompt, new = int(w["prompt_tokens"]), int(w["new_tokens"])
        context = int(w.get("context", 0))
        # Workload.to_dict writes the resolved context; 0 means "prompt + new", so map it back.
        workload = Workload(prompt_tokens=prompt, new_tokens=new,
                            concurrency=int(w["concurrency"]),
                            context=0 if context == prompt + new else context)
        return cls(
            **_read_figures(d, figs),
            workload=workload,
            n_requests=int(d["n_requests"]), warmup=int(d["warmup"]), threads=int(d["threads"]),
            samples={str(k): tuple(v) for k, v in d.get("samples", {}).items()},
        )


@dataclass(frozen=True)
class Measurement:
    """Everything measured about one realized plan; either half may be absent (not measured)."""

    plan_label: str = ""
    plan_digest: str = ""
    quality: QualityResult | None = None
    bench: BenchResult | None = None
    notes: tuple[str, ...] = ()
    version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        object.__setattr__(self, "notes", tuple(self.notes))

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "plan_label": self.plan_label,
            "plan_digest": self.plan_digest,
            "quality": self.quality.to_dict() if self.quality else None,
            "bench": self.bench.to_dict() if self.bench else None,
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Measurement:
        _check_version(cls, d)
        return cls(
            plan_label=str(d.get("plan_label", "")),
            plan_digest=str(d.get("plan_digest", "")),
            quality=QualityResult.from_dict(d["quality"]) if d.get("quality") else None,
            bench=BenchResult.from_dict(d["bench"]) if d.get("bench") else None,
            notes=tuple(d.get("notes", ())),
        )
