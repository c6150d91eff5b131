"""Latency and memory benchmark of a realized artifact, run in a child process.

    result = run_bench(BenchTarget("artifact/model.gguf"), BenchWorkload(prompt_tokens=512,
                       new_tokens=128, concurrency=2, n_requests=16), on_progress=bar.update)
"""

from __future__ import annotations

from advisor.measure.latency.config import BenchTarget, BenchWorkload
from advisor.measure.latency.run import run_bench
from advisor.measurement import BenchResult

__all__ = ["BenchResult", "BenchTarget", "BenchWorkload", "run_bench"]
