"""AutoRound's GGUF export as a realization of GGUF plans (backends.gguf.autoround): the plan's
types reach the file (read back; what AutoRound changes is recorded as fallbacks), llama.cpp
loads and runs it, the artifact says who wrote it; unwritable types and misuse are refused
before any work. A tiny Llama 256 wide (K-quants need 256-value blocks) from config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from advisor.errors import BadInput
from advisor.inspect import inspect_model
from advisor.modelspec import ModelSpec
from advisor.plan import QuantPlan
from advisor.space.named import plan_for_format
from backends import get_backend
from backends.base import QuantizeOptions
from backends.gguf import autoround
from tests.backends.hf_tiny import embedded_tokenizer_dir, tiny_with_tokenizer

pytestmark = pytest.mark.skipif(not autoround.available(), reason="auto-round not installed")
OPTIONS = QuantizeOptions(threads=2, extra={"calib_windows": 2})


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ModelSpec]:
    root = tmp_path_factory.mktemp("ar-gguf")
    model_dir, _ = tiny_with_tokenizer(root, embedded_tokenizer_dir(), hidden_size=256,
                                       intermediate_size=512)
    return model_dir, inspect_model(str(model_dir))


def _autoround(plan: QuantPlan) -> QuantPlan:
    return QuantPlan(plan.backend, plan.tensor_formats, {**plan.options, "quantizer": "autoround"},
                     plan.label)


def test_a_mixed_plan_is_written_as_planned_and_runs_in_llama_cpp(tiny: tuple,
                                                                   tmp_path: Path) -> None:
    model_dir, spec = tiny
    base = plan_for_format(spec, "Q4_K_M")
    formats = dict(base.tensor_formats)
    formats["blk.0.attn_q.weight"] = "Q6_K"
    formats["blk.1.ffn_down.weight"] = "Q8_0"
    formats["blk.0.ffn_up.weight"] = "Q5_K"
    plan = _autoround(QuantPlan("gguf", formats, base.options, "mixed"))
    out = tmp_path / "a"
    written = get_backend("gguf").quantize(spec, plan, out, OPTIONS)
    from backends.gguf.quantize import written_types

    on_disk = written_types(out / "model.gguf")
    assert written.tensor_formats == on_disk
    assert written.options["quantizer"] == "autoround" and written.options["iters"] == 0
    assert written.options["autoround_format"] == "gguf:q4_k_s"
    for name in ("blk.0.attn_q.weight", "blk.1.ffn_down.weight", "blk.0.ffn_up.weight"):
        assert on_disk[name] == formats[name], name
    # every difference from the plan is recorded, none hidden
    diff = {n: [f, on_disk[n]] for n, f in formats.items() if on_disk.get(n) != f}
    assert written.options["fallbacks"] == diff
    runner = get_backend("gguf").load(out, n_ctx=128, threads=2)
    try:
        toks = runner.tokenize("The river valley was quiet in the early morning")
        logits = runner.logits(toks)
        assert logits.shape == (len(toks), 49152) and bool((logits == logits).all())
        new, _ = runner.generate(toks, 4)
        assert len(new) == 4
    finally:
        runner.close()


def test_types_autoround_does_not_write_are_refused_before_any_work(tiny: tuple,
                                                                    tmp_path: Path) -> None:
    _, spec = tiny
    plan = _autoround(plan_for_format(spec, "IQ4_XS"))
    with pytest.raises(BadInput, match="does not write IQ4_XS"):
        get_backend("gguf").quantize(spec, plan, tmp_path / "x", OPTIONS)
    assert not (tmp_path / "x").exists()
    bad = QuantPlan("gguf", plan.tensor_formats, {"quantizer": "mystery"})
    with pytest.raises(BadInput, match="GGUF quantizer 'mystery'"):
        get_backend("gguf").quantize(spec, bad, tmp_path / "y", OPTIONS)


def _advisor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "advisor.cli", *args], capture_output=True,
                          text=True, timeout=600)


def test_cli_passes_the_quantizer_and_refuses_misuse(tiny: tuple, tmp_path: Path) -> None:
    """`quantize --gguf-quantizer autoround` reaches the AutoRound writer (its refusal of IQ
    types is the proof, before any work); an HF checkpoint writer has no GGUF quantizer."""
    model_dir, _ = tiny
    r = _advisor("-q", "quantize", "--model", str(model_dir), "--preset", "IQ4_XS",
                 "--gguf-quantizer", "autoround", "--out", str(tmp_path / "iq"))
    assert r.returncode == 2 and "AutoRound's GGUF export does not write IQ4_XS" in r.stderr
    r = _advisor("-q", "quantize", "--model", str(model_dir), "--backend", "rtn",
                 "--gguf-quantizer", "autoround", "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "--gguf-quantizer autoround with a rtn plan" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "iq").exists() and not (tmp_path / "x").exists()


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("QUANT_ADVISOR_LONG_TESTS") != "1",
                    reason="a whole recommend with AutoRound copies (~50 s) is kept out of the "
                           "35-minute suite; set QUANT_ADVISOR_LONG_TESTS=1")
def test_recommend_realizes_each_gguf_candidate_both_ways_and_picks_on_measurements(
        tiny: tuple, tmp_path: Path) -> None:
    """`recommend --gguf-quantizer both`: every GGUF candidate also written by AutoRound, each
    measured; the pick is the lowest measured KL of those meeting the targets, whoever wrote
    it; an AutoRound copy's report names its quantizer and calibration text."""
    from tests.recommend.test_recommend_cli import FAST

    model_dir, _ = tiny
    q = _advisor("-q", "quantize", "--model", str(model_dir), "--preset", "Q4_K_M",
                 "--no-imatrix", "--out", str(tmp_path / "q4"), "--json")
    assert q.returncode == 0, q.stderr
    budget = json.loads(q.stdout)["size"]["value"]
    r = _advisor("-q", "recommend", "--model", str(model_dir), "--max-size", str(budget), *FAST,
                 "--candidates", "1", "--presets", "0", "--gguf-quantizer", "both",
                 "--out", str(tmp_path / "pick"), "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    rows = {c["label"]: c for c in rep["candidates"]}
    plain = [label for label in rows if not label.endswith("+autoround")]
    assert plain and all(f"{label}+autoround" in rows for label in plain)
    for row in rows.values():
        assert row["kl_measured"] > 0
        written = json.loads((tmp_path / row["directory"] / "report.json").read_text())
        by = written["plan"]["options"].get("quantizer", "llama.cpp")
        assert by == ("autoround" if row["label"].endswith("+autoround") else "llama.cpp")
        if by == "autoround":
            assert "calibration" in written["provenance"]["text_sha256"]
    meeting = [c for c in rows.values() if not c["violations"]]
    assert rows[rep["pick"]["label"]]["kl_measured"] == min(c["kl_measured"] for c in meeting)


def test_recommend_refuses_an_unknown_gguf_quantizer() -> None:
    from advisor.recommend.config import RecommendConfig

    with pytest.raises(BadInput, match="--gguf-quantizer 'gptq'"):
        RecommendConfig(gguf_quantizer="gptq")


def test_a_candidate_autoround_cannot_write_gives_way_to_llama_cpps_copy(
        embedded_spec: ModelSpec, tmp_path: Path) -> None:
    """With both writers, a plan AutoRound refuses (IQ4_XS here) leaves llama.cpp's copy to
    stand alone; with AutoRound alone, the refusal is the run's one-line error."""
    from advisor.estimate import Workload
    from advisor.probe.catalogue import load_target
    from advisor.progress import Stages
    from advisor.recommend.candidates import Candidate, realize_all, with_gguf_quantizer

    plan = plan_for_format(embedded_spec, "IQ4_XS")
    todo = [Candidate("IQ4_XS", "preset", plan)]
    args = (embedded_spec, embedded_spec, load_target("x86-server"), Workload(),
            QuantizeOptions(threads=2, imatrix=False), Stages(False))
    both = with_gguf_quantizer(todo, "both")
    assert [c.label for c in both] == ["IQ4_XS", "IQ4_XS+autoround"]
    realized = realize_all(both, tmp_path / "both", *args)
    assert [r.candidate.label for r in realized] == ["IQ4_XS"]
    assert not (tmp_path / "both" / "IQ4_XS+autoround").exists()
    with pytest.raises(BadInput, match="does not write .*IQ4_XS"):
        realize_all(with_gguf_quantizer(todo, "autoround"), tmp_path / "alone", *args)
