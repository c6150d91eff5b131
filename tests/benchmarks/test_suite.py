"""`make bench`'s suite in its --quick form: the same code paths on a small subset, so the
published benchmark cannot rot between runs. The full suite runs only under `make bench`.

It takes 3.5 min (210 s in the clean-clone run at 962d141, the suite's slowest test), which put
`make test` at 34 of its 35 minutes; it runs with QUANT_ADVISOR_LONG_TESTS=1, and every
`make bench` section runs the same code on the real models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("QUANT_ADVISOR_LONG_TESTS") != "1",
                    reason="the quick bench suite (3.5 min) is kept out of the 35-minute suite; "
                           "set QUANT_ADVISOR_LONG_TESTS=1")
def test_quick_suite_writes_benchmarks_md_from_its_own_measurements(tmp_path: Path) -> None:
    md = tmp_path / "BENCHMARKS.md"
    r = subprocess.run([sys.executable, "-m", "advisor.benchmarks", "--quick", "--out",
                        str(tmp_path / "work"), "--md", str(md)], capture_output=True, text=True,
                       timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((tmp_path / "work" / "results.json").read_text())
    text = md.read_text()
    for heading in ("## Machine", "## 1. Quality per byte", "## 2. The tool's own cost",
                    "## 3. Prediction accuracy", "## 4. Decode speed against the physical limit",
                    "## Commands run"):
        assert heading in text
    # every quality row in the markdown is the measured one, and came from an eval command
    for row in res["quality"]:
        assert f"| {row['label']} | no | {row['size']:,} |" in text
        assert f"{row['mean_kl']:.4f}" in text and row["mean_kl"] > 0
        assert (Path(row["dir"]) / "model.gguf").stat().st_size == row["size"]
    assert sum("advisor eval" in c for c in res["commands"]) >= len(res["quality"])
    q8 = next(x for x in res["quality"] if x["label"] == "Q8_0")
    q4 = next(x for x in res["quality"] if x["label"] == "Q4_0")
    assert q8["mean_kl"] < q4["mean_kl"] and q8["size"] > q4["size"]
    # the headline's code path: preset and pick on every held-out window, with error bars
    row = res["float_native"][0]
    assert row["pick_size"] <= row["budget"]
    for q in (row["preset"], row["pick"]):
        lo, hi = q["mean_kl_ci95"]
        assert lo <= q["mean_kl"] <= hi and len(q["kl_windows"]) == q["n_windows"] > 1
    v = row["versus"]
    assert v["ratio"] == pytest.approx(row["pick"]["mean_kl"] / row["preset"]["mean_kl"])
    assert f"**{v['ratio']:.2f}x**" in text and "Already-quantized sources" in text
    pick = res["picks"][0]
    assert pick["size"] <= pick["budget"] and pick["mean_kl"] > 0
    # the cost section: two sizes, a stage breakdown, a fitted exponent
    runs = res["cost"]["runs"]
    assert len(runs) == 2 and runs[0]["params"] < runs[1]["params"]
    assert all(x["stage_seconds"]["sensitivity"] > 0 and x["peak_rss"] > 0 for x in runs)
    assert res["cost"]["exponents"]["total"] is not None
    # prediction accuracy: the file-size estimate is exact for llama.cpp presets
    sizes = [p["size"] for p in res["predictions"] if p["label"] in ("Q4_0", "Q8_0")]
    assert sizes and all(pred == meas for pred, meas in sizes)
    assert all(0 < x["percent"] < 200 for x in res["roofline"])
    assert (tmp_path / "data" / "benchmarks" / "quality_per_byte.png").stat().st_size > 10_000
