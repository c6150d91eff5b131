"""This host's own latency model: fitted to its benches, used for the candidates benched after."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from advisor.calibration import host, kernels

TRUE = {"layers": 2e-4, "decode_flops": 1 / 20e9, "decode_bytes": 1 / 15e9}


def _features(layers: int, params: float, nbytes: float) -> dict[str, float]:
    return {"layers": layers, "decode_flops": 2 * params, "decode_bytes": nbytes,
            "prefill_flops": 2 * params * 512, "prefill_bytes": nbytes, "new_tokens": 128}


def _seconds(f: dict[str, float]) -> float:
    return sum(c * f[k] for k, c in TRUE.items())


def test_fit_recovers_the_costs_it_was_made_of() -> None:
    recs = [{"host": "h", "artifact": str(i), "features": f, "decode": _seconds(f),
             "prefill": f["prefill_flops"] / 50e9}
            for i, f in enumerate([_features(30, 135e6, 9e7), _features(30, 135e6, 1.4e8),
                                   _features(18, 270e6, 2.4e8), _features(32, 360e6, 2e8)])]
    fit = host.fit("decode", recs)
    assert fit is not None and fit.benches == 4
    new = _features(24, 500e6, 3e8)
    assert fit.seconds(new) == pytest.approx(_seconds(new), rel=1e-6)
    assert fit.band is not None and fit.band[0] == pytest.approx(1, abs=1e-6)
    assert host.fit("decode", recs[:1]) is None  # one bench: too few


def test_negative_terms_are_dropped() -> None:
    x = np.array([[1.0, 1.0], [2.0, 1.0], [3.0, 1.0]])
    y = np.array([1.0, 0.9, 0.8])  # falls with the first term: its cost would be negative
    coef = host._solve(x, y)
    assert (coef >= 0).all() and coef[0] == 0 and coef[1] > 0


def test_store_keeps_this_host_and_survives_a_torn_line(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUANT_ADVISOR_CACHE", str(tmp_path))
    f = _features(30, 135e6, 9e7)
    host.add("a", f, 0.02, 0.5)
    host.add("b", {**f, "decode_bytes": 1.4e8}, 0.021, 0.52)
    with open(tmp_path / host.STORE, "a") as out:
        out.write(json.dumps({"host": "another machine", "artifact": "c", "features": f,
                              "decode": 9, "prefill": 9}) + "\n" + '{"host": "torn')
    assert [r["artifact"] for r in host.records()] == ["a", "b"]
    got = host.predict(f)
    assert set(got) == {"decode", "prefill"} and 0.019 < got["decode"][0] < 0.022
    assert host.predict(f, exclude="a") == {}  # one bench, and no roofline to rescale


def test_one_bench_rescales_the_roofline(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUANT_ADVISOR_CACHE", str(tmp_path))
    f = {**_features(30, 135e6, 9e7), "roofline_decode": 0.005, "roofline_prefill": 0.4}
    host.add("a", f, 0.010, 0.6)  # measured twice and 1.5x the roofline
    got = host.predict({**f, "roofline_decode": 0.007, "roofline_prefill": 0.5})
    assert got["decode"][0] == pytest.approx(0.014) and got["prefill"][0] == pytest.approx(0.75)
    assert got["decode"][1] is None and got["decode"][2] == 1


def _advisor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "advisor.cli", *args], capture_output=True,
                          text=True, timeout=600)


@pytest.mark.slow
def test_candidates_benched_later_are_predicted_from_the_earlier_ones(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 18, item 4: the first bench is predicted from this host's kernel timings of its
    types; after two benches, the third artifact's latency is re-predicted before its own bench
    as its kernel sum scaled by the median measured / kernel-sum ratio of those two. How close
    that lands to the bench (the 20% target) is timing on a shared machine, so `make bench
    SECTION=predictions` measures it, not this test (a CI run saw 0.76x once). The memory
    estimate is within 10% of every bench. A cache of its own: the suite's holds the benches of
    earlier tests of this host."""
    pytest.importorskip("llama_cpp")
    monkeypatch.setenv("QUANT_ADVISOR_CACHE", str(tmp_path / "cache"))
    dirs = []
    for preset in ("Q4_0", "Q8_0", "Q4_K_M"):
        out = tmp_path / preset
        r = _advisor("-q", "quantize", "--preset", preset, "--no-imatrix", "--out", str(out))
        assert r.returncode == 0, r.stderr
        dirs.append(out)
    for d in dirs:
        r = _advisor("-q", "bench", "--artifact", str(d), "--requests", "3", "--prompt-tokens",
                     "512", "--max-new-tokens", "128")
        assert r.returncode == 0, r.stderr
    reports = [json.loads((d / "report.json").read_text()) for d in dirs]
    for rep in reports:
        b, est = rep["measurements"]["bench"], rep["estimate"]
        memory = b["peak_rss"]["value"] - b["baseline_rss"]["value"]
        print(f"\n{rep['label']}: memory {est['total_memory']['value'] / 2**20:.1f} / "
              f"{memory / 2**20:.1f} MiB, per token {est['per_token']['value'] * 1e3:.2f} / "
              f"{b['per_token']['value'] * 1e3:.2f} ms, ttft {est['ttft']['value'] * 1e3:.0f} / "
              f"{b['ttft']['value'] * 1e3:.0f} ms (predicted / measured)")
        assert est["total_memory"]["value"] == pytest.approx(memory, rel=0.10)
    # the first bench: this host's kernel timings of its types alone (timed before it)
    first = reports[0]["estimate"]["assumptions"][0]
    assert "kernel timings per type" in first and "scaled by" not in first
    last = reports[-1]["estimate"]
    assert "scaled by 2 earlier benches" in last["assumptions"][0]
    recs = host.records()
    key = host.host_key()
    sums = [kernels.seconds(r["features"], key)["decode"] for r in recs]
    assert recs[2]["features"] == pytest.approx(host.numeric(last["features"]))
    scale = float(np.median([recs[i]["decode"] / sums[i] for i in range(2)]))
    assert last["per_token"]["value"] == pytest.approx(sums[2] * scale)
    measured = reports[-1]["measurements"]["bench"]["per_token"]["value"]
    assert 0.5 < measured / last["per_token"]["value"] < 2  # timed, not a wild guess
    assert "band" not in last["per_token"]  # two benches: too few for a leave-one-out band
    assert len(host.records()) == 3


def test_a_strangers_report_cannot_break_the_re_prediction(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from advisor.estimate import recalibrated

    monkeypatch.setenv("QUANT_ADVISOR_CACHE", str(tmp_path))
    f = {**_features(30, 135e6, 9e7), "roofline_decode": 0.005, "roofline_prefill": 0.4}
    host.add("a", f, 0.010, 0.6)
    good = {"ttft": {"value": 0.4}, "per_token": {"value": 0.005}, "features": f,
            "assumptions": ["x"]}
    out = recalibrated(good, exclude="b")
    assert out is not None and out["per_token"]["value"] == pytest.approx(0.010)
    assert out["request_latency"]["value"] == pytest.approx(0.6 + 128 * 0.010)
    for junk in ({**good, "features": {"layers": "30", "decode_bytes": None}},
                 {**good, "features": "nope"}, {**good, "ttft": "fast"},
                 {**good, "per_token": {"value": "1"}}, {**good, "assumptions": "abc"}):
        got = recalibrated(junk, exclude="b")
        assert got is None or got["assumptions"][1:] == []
    host.add("c", {"layers": "thirty", "decode_bytes": float("nan")}, 0.01, 0.5)
    assert all(isinstance(v, float) for r in host.records() for v in r["features"].values())
