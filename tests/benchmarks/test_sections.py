"""Pieces of `make bench` that need no model: duplicate detection, the guard on --out, fits."""

from __future__ import annotations

from pathlib import Path

import pytest

from advisor.benchmarks import sections
from advisor.benchmarks.__main__ import main


def _artifact(d: Path, payload: bytes) -> Path:
    d.mkdir(parents=True)
    (d / "model.gguf").write_bytes(payload)
    (d / "report.json").write_text("{}")  # not part of the weights
    return d


def test_weights_digest_tells_identical_weight_files_apart_from_different_ones(
        tmp_path: Path) -> None:
    a = _artifact(tmp_path / "a", b"GGUF" + bytes(range(256)) * 64)
    b = _artifact(tmp_path / "b", b"GGUF" + bytes(range(256)) * 64)
    c = _artifact(tmp_path / "c", b"GGUF" + bytes(range(256)) * 63 + bytes(256))
    (b / "report.json").write_text('{"other": "report"}')
    assert sections.weights_digest(a) == sections.weights_digest(b)
    assert sections.weights_digest(a) != sections.weights_digest(c)


def test_full_suite_refuses_a_non_empty_out_that_is_not_its_own(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    keep = out / "notes.txt"
    keep.write_text("not a benchmark's")
    assert main(["--out", str(out), "--md", str(tmp_path / "B.md")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--out" in err and "results.json" in err
    assert keep.read_text() == "not a benchmark's" and not (tmp_path / "B.md").exists()


def test_growth_exponent_recovers_a_power_law() -> None:
    sizes = [1e8, 2e8, 4e8]
    assert sections._fit(sizes, [3.0 * s ** 1.5 for s in sizes]) == pytest.approx(1.5)
    assert sections._fit([1e8], [1.0]) is None


def test_hf_rows_are_judged_against_rtn_on_the_same_windows() -> None:
    """The HF table's second part: quantize time and KL / RTN's with its paired interval,
    from the per-window KLs of the two rows (a row without RTN at its width gets none)."""
    from advisor.benchmarks import page
    from advisor.measure.quality.metrics import paired_comparison

    rtn = {"label": "rtn w4 g128", "backend": "rtn", "bits": 4, "quantize_s": 7.0,
           "kl_windows": [0.4, 0.5, 0.6, 0.5]}
    gptq = {"label": "gptq w4 g128", "backend": "gptq", "bits": 4, "quantize_s": 65.2,
            "kl_windows": [0.2, 0.3, 0.3, 0.2]}
    gptq["vs_rtn"] = paired_comparison(gptq["kl_windows"], rtn["kl_windows"])
    lines = page.hf_cost_table([rtn, gptq, {"label": "fp8 w8", "missing": "not here"}])
    assert lines[2] == "| rtn w4 g128 | 7 s | — |"
    lo, hi = gptq["vs_rtn"]["ratio_ci95"]
    assert lines[3] == f"| gptq w4 g128 | 65 s | 0.50x ({lo:.2f}-{hi:.2f}) |"
    assert lo < 0.5 < hi and len(lines) == 4
    assert page.hf_section({}) == [] and "### HF checkpoint backends" in page.hf_section(
        {"hf": [rtn | {"size": 1, "imatrix": False}]})


def test_gguf_writer_rows_are_judged_against_llama_cpp_with_imatrix() -> None:
    """The GGUF writers' table: each row's KL / llama.cpp + imatrix's with its paired interval
    and the tensors AutoRound retyped; no rows, no section."""
    from advisor.benchmarks import page
    from advisor.measure.quality.metrics import paired_comparison

    base = {"model": "m", "preset": "Q4_K_M", "quantizer": "llama.cpp + imatrix",
            "size": 105_454_080, "quantize_s": 20.4, "fallbacks": 0, "mean_kl": 0.0304,
            "mean_kl_ci95": [0.0284, 0.0323], "kl_windows": [0.03, 0.031, 0.029, 0.032]}
    ar = {**base, "quantizer": "AutoRound", "quantize_s": 66.2, "fallbacks": 2,
          "mean_kl": 0.0215, "mean_kl_ci95": [0.0203, 0.0228],
          "kl_windows": [0.021, 0.022, 0.020, 0.023]}
    ar["vs_imatrix"] = paired_comparison(ar["kl_windows"], base["kl_windows"])
    lines = page.gguf_quantizer_section({"gguf_quantizers": [base, ar]})
    assert lines[0] == "### GGUF writers: llama.cpp and AutoRound"
    lo, hi = ar["vs_imatrix"]["ratio_ci95"]
    assert lines[-3].endswith("| — | 0 | 20 s |") and "105,454,080" in lines[-3]
    assert lines[-2].endswith(f"| {ar['vs_imatrix']['ratio']:.2f}x ({lo:.2f}-{hi:.2f}) | 2 | "
                              "66 s |")
    assert page.gguf_quantizer_section({}) == []


def test_scale_family_spans_135m_to_3b_parameters() -> None:
    """`make bench SECTION=scale` (issue 17): the llama layout on SmolLM2's vocabulary (49,152
    tokens, tied embedding) at four fitted sizes, every width a whole number of 256-blocks (so
    llama.cpp quantizes every size with the same kernels), and SmolLM2's own 135M and 360M
    shapes shown outside the fit; the parameter counts as the config gives them."""
    from advisor.benchmarks.models import SCALE_FAMILY, FamilySize

    def params(s: FamilySize) -> int:
        kv = s.kv_heads * s.hidden // s.heads
        layer = s.hidden * (2 * s.hidden + 2 * kv) + 3 * s.hidden * s.ffn + 2 * s.hidden
        return 49152 * s.hidden + s.layers * layer + s.hidden

    fitted = [s for s in SCALE_FAMILY if s.fitted]
    got = [params(s) for s in fitted]
    assert got == sorted(got)
    assert [round(p / 1e8) for p in got] == [1, 4, 17, 30]  # 138M, 366M, 1.71B, 2.97B
    for s in fitted:
        kv = s.kv_heads * s.hidden // s.heads
        assert s.hidden % 256 == s.ffn % 256 == kv % 256 == 0, s.name
    shown = [s for s in SCALE_FAMILY if not s.fitted]
    assert [round(params(s) / 1e6) for s in shown] == [135, 362]
    assert all(s.hidden % 256 for s in shown)  # the widths that fall back to other types


def test_the_cost_table_shows_issue_17s_memory_bound() -> None:
    from advisor.benchmarks import page

    run = {"name": "m", "params": 1e9, "wall_s": 10.0, "peak_rss": 2**30,
           "stage_seconds": {"sensitivity": 5.0}, "stage_peak_rss": {"sensitivity": 2**30}}
    text = "\n".join(page.cost_section({"stages": ["sensitivity"], "cost": {
        "runs": [run], "exponents": {}, "settings": ["--no-imatrix"]}}))
    assert "| RSS bound |" in text
    assert "| m | 1000M | 5.0 s / 1024 | 10 s | 1024 MiB | 1978 MiB |" in text
    aside = dict(run, name="s", fitted=False)
    text = "\n".join(page.cost_section({"stages": ["sensitivity"], "cost": {
        "runs": [run, aside], "exponents": {}, "settings": []}}))
    assert "| s (not fitted) | 1000M |" in text and "| m | 1000M |" in text
