"""Per-request samples -> the measured figures of a BenchResult (pure: no processes, no models)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from advisor.measure.latency.config import BenchWorkload
from advisor.measurement import BYTES, SECONDS, TOKENS_PER_S, BenchResult, measured


def request_samples(arrivals: Sequence[float], latency: float) -> dict[str, float]:
    """One request's TTFT, mean inter-token time (0 when only one token) and latency."""
    if not arrivals:
        raise ValueError("a request produced no tokens; expected at least one arrival time")
    n = len(arrivals)
    per_token = (arrivals[-1] - arrivals[0]) / (n - 1) if n > 1 else 0.0
    return {"ttft": float(arrivals[0]), "per_token": float(per_token), "latency": float(latency)}


def summarize(samples: Sequence[dict[str, float]], wl: BenchWorkload, wall_seconds: float,
              peak_rss: int, baseline_rss: int, loaded_pss: int, artifact_size: int,
              threads: int) -> BenchResult:
    """Figures of the measured phase: medians, latency percentiles, aggregate throughput."""
    if len(samples) != wl.n_requests:
        raise ValueError(f"{len(samples)} request samples; the workload has {wl.n_requests}")
    cols = {k: np.array([s[k] for s in samples], dtype=np.float64)
            for k in ("ttft", "per_token", "latency")}
    lat = cols["latency"]
    return BenchResult(
        ttft=measured(np.median(cols["ttft"]), SECONDS),
        per_token=measured(np.median(cols["per_token"]), SECONDS),
        latency_p50=measured(np.percentile(lat, 50), SECONDS),
        latency_p95=measured(np.percentile(lat, 95), SECONDS),
        latency_p99=measured(np.percentile(lat, 99), SECONDS),
        decode_tokens_per_s=measured(wl.n_requests * wl.new_tokens / wall_seconds, TOKENS_PER_S),
        peak_rss=measured(peak_rss, BYTES),
        baseline_rss=measured(baseline_rss, BYTES),
        loaded_pss=measured(loaded_pss, BYTES),
        artifact_size=measured(artifact_size, BYTES),
        wall_seconds=measured(wall_seconds, SECONDS),
        workload=wl.workload,
        n_requests=wl.n_requests,
        warmup=wl.warmup,
        threads=threads,
        samples={k: tuple(v.tolist()) for k, v in cols.items()},
    )
