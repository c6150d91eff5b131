from __future__ import annotations

import os
from pathlib import Path

import pytest

from advisor.errors import BadInput
from advisor.measure.latency import BenchTarget, BenchWorkload, run_bench
from advisor.measure.latency.worker import _measure, build_prompts, peak_rss_bytes
from tests.measure.quality.fakes import FakeRunner


def test_workload_validates_and_round_trips() -> None:
    wl = BenchWorkload(prompt_tokens=32, new_tokens=8, concurrency=2, n_requests=3, warmup=0)
    assert BenchWorkload.from_dict(wl.to_dict()) == wl
    assert wl.n_ctx == 40 and wl.workload.concurrency == 2
    with pytest.raises(ValueError, match="concurrency=0"):
        BenchWorkload(concurrency=0)
    with pytest.raises(ValueError, match="warmup=-1"):
        BenchWorkload(warmup=-1)
    t = BenchTarget("x.gguf", backend="gguf")
    assert BenchTarget.from_dict(t.to_dict()) == t


def test_prompts_are_distinct_slices() -> None:
    toks = list(range(100))
    p = build_prompts(toks, 30, 5)
    assert [x[0] for x in p] == [0, 30, 60, 19, 49]  # wraps within the 71 possible starts
    assert all(len(x) == 30 for x in p)
    with pytest.raises(BadInput, match="a prompt needs 101"):
        build_prompts(toks, 101, 1)


def test_measure_threads_share_the_requests() -> None:
    wl = BenchWorkload(prompt_tokens=4, new_tokens=3, concurrency=2, n_requests=5, warmup=1)
    prompts = build_prompts(list(range(50)), 4, 7)
    seen: list[tuple[int, int]] = []
    samples, wall = _measure([FakeRunner(), FakeRunner()], prompts, wl,
                             lambda d, t: seen.append((d, t)))
    assert len(samples) == 5 and all(s["ttft"] == 0.001 for s in samples)
    assert all(s["per_token"] == pytest.approx(0.001) for s in samples)
    assert seen == [(i, 5) for i in range(1, 6)] and wall > 0


def test_peak_rss_of_this_process() -> None:
    assert 10 << 20 < peak_rss_bytes() < 64 << 30


def test_missing_artifact() -> None:
    with pytest.raises(BadInput, match="does not exist"):
        run_bench("/nonexistent/model.gguf", BenchWorkload())


@pytest.mark.slow
@pytest.mark.parametrize("concurrency", [1, 2])
def test_bench_embedded_model(embedded_gguf: Path, concurrency: int) -> None:
    pytest.importorskip("llama_cpp")
    # The parent's own memory must not show up in the child's peak (ru_maxrss would count it).
    ballast = bytearray(1 << 30)
    for i in range(0, len(ballast), 4096):
        ballast[i] = 1
    wl = BenchWorkload(prompt_tokens=32, new_tokens=8, concurrency=concurrency, n_requests=3,
                       warmup=1)
    progress: list[tuple[int, int]] = []
    r = run_bench(embedded_gguf, wl, threads=os.cpu_count() or 1,
                  on_progress=lambda d, t: progress.append((d, t)), timeout_s=300)
    del ballast
    print(f"\nconcurrency {concurrency}: ttft {r.ttft.value * 1e3:.1f} ms, per-token "
          f"{r.per_token.value * 1e3:.1f} ms, latency p50/p95/p99 {r.latency_p50.value:.3f}/"
          f"{r.latency_p95.value:.3f}/{r.latency_p99.value:.3f} s, "
          f"{r.decode_tokens_per_s.value:.1f} tok/s, peak RSS {r.peak_rss.value / 2**20:.0f} MiB "
          f"(baseline {r.baseline_rss.value / 2**20:.0f} MiB, PSS loaded "
          f"{r.loaded_pss.value / 2**20:.0f} MiB), wall {r.wall_seconds.value:.2f} s")
    assert progress[-1] == (3, 3) and len(progress) == 3
    assert 0 < r.ttft.value < r.latency_p50.value
    assert 0 < r.per_token.value < r.latency_p50.value
    assert r.latency_p50.value <= r.latency_p95.value <= r.latency_p99.value
    assert r.latency_p99.value <= max(r.samples["latency"]) + 1e-12
    assert len(r.samples["ttft"]) == 3 and r.decode_tokens_per_s.value > 0
    size = embedded_gguf.stat().st_size
    assert r.artifact_size.value == size
    assert r.baseline_rss.value < size < r.peak_rss.value < (1 << 30)
    assert size < r.loaded_pss.value <= r.peak_rss.value
    assert r.workload.concurrency == concurrency and r.n_requests == 3
    if concurrency == 1:  # memory as llama.cpp accounts it: within 10% of the measured peak
        from advisor.estimate import estimate
        from advisor.inspect import inspect_model
        from advisor.probe import get_hardware
        from advisor.space.named import plan_for_format

        spec = inspect_model(embedded_gguf)
        est = estimate(spec, plan_for_format(spec, "Q4_1"), get_hardware(None, None),
                       wl.workload)
        measured = r.peak_rss.value - r.baseline_rss.value
        assert est.total_memory.value == pytest.approx(measured, rel=0.10)
    assert all(f["origin"] == "measured" for f in r.to_dict().values()
               if isinstance(f, dict) and "origin" in f)
