"""The Measurement value type: round trips, and only measured figures are accepted."""

from __future__ import annotations

import json

import pytest

from advisor.figures import Figure, Origin
from advisor.measure.latency.config import BenchWorkload
from advisor.measure.latency.stats import request_samples, summarize
from advisor.measurement import NATS, Measurement, QualityResult, measured


def quality() -> QualityResult:
    return QualityResult(
        mean_kl=measured(0.042, NATS), p99_kl=measured(0.18, NATS),
        top1_agreement=measured(0.84, "fraction"), perplexity=measured(31.3, "perplexity"),
        reference_perplexity=measured(30.5, "perplexity"), eval_seconds=measured(12.0, "s"),
        n_windows=3, n_tokens=765, text_sha256="ab" * 32, reference="r" * 32, window=512,
    )


def bench():  # noqa: ANN201 - BenchResult
    wl = BenchWorkload(prompt_tokens=32, new_tokens=8, concurrency=2, n_requests=3, warmup=1)
    samples = [request_samples([0.1, 0.2, 0.3], 0.31), request_samples([0.2, 0.25, 0.3], 0.33),
               request_samples([0.15, 0.2, 0.25], 0.26)]
    return summarize(samples, wl, wall_seconds=0.6, peak_rss=300 << 20, baseline_rss=60 << 20,
                     loaded_pss=250 << 20,
                     artifact_size=100 << 20, threads=2)


def test_round_trip_through_json() -> None:
    m = Measurement(plan_label="Q4_K_M", plan_digest="abc", quality=quality(), bench=bench(),
                    notes=("source is Q4_1",))
    back = Measurement.from_dict(json.loads(json.dumps(m.to_dict())))
    assert back == m
    assert Measurement.from_dict(Measurement().to_dict()) == Measurement()


def test_every_figure_is_measured() -> None:
    q = quality().to_dict()
    assert q["mean_kl"] == {"value": 0.042, "unit": "nats", "origin": "measured"}
    with pytest.raises(ValueError, match="mean_kl has origin 'predicted'"):
        QualityResult(**{**quality().__dict__, "mean_kl": Figure(0.1, NATS, Origin.PREDICTED)})
    for k, v in bench().to_dict().items():
        if isinstance(v, dict) and "origin" in v:
            assert v["origin"] == "measured", k


def test_version_is_checked() -> None:
    d = quality().to_dict()
    d["version"] = 99
    with pytest.raises(ValueError, match="version 99"):
        QualityResult.from_dict(d)


def test_summary_figures() -> None:
    b = bench()
    assert b.ttft.value == pytest.approx(0.15)
    assert b.per_token.value == pytest.approx(0.05)  # medians of 0.1, 0.05, 0.05
    assert b.latency_p50.value == pytest.approx(0.31)
    assert b.latency_p50.value <= b.latency_p95.value <= b.latency_p99.value <= 0.33
    assert b.decode_tokens_per_s.value == pytest.approx(3 * 8 / 0.6)
    assert b.samples["latency"] == (0.31, 0.33, 0.26)
    assert b.workload.concurrency == 2 and b.n_requests == 3
    with pytest.raises(ValueError, match="no tokens"):
        request_samples([], 0.1)


def test_window_values_and_the_error_bar_round_trip_and_are_checked() -> None:
    from dataclasses import replace

    q = replace(quality(), mean_kl=Figure(0.042, NATS, Origin.MEASURED, ci95=(0.03, 0.055)),
                kl_windows=(0.03, 0.04, 0.056))
    d = json.loads(json.dumps(q.to_dict()))
    assert d["mean_kl"]["ci95"] == [0.03, 0.055] and d["kl_windows"] == [0.03, 0.04, 0.056]
    assert QualityResult.from_dict(d) == q
    with pytest.raises(ValueError, match="kl_windows"):
        replace(quality(), kl_windows=(0.1, 0.2))  # 3 windows, 2 values
    with pytest.raises(ValueError, match="ci95"):
        Figure(0.1, NATS, Origin.MEASURED, ci95=(0.2, 0.1))
