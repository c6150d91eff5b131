"""`advisor recommend` end to end on the embedded model, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

Q3_K_M_BYTES = 93_510_208  # llama.cpp's Q3_K_M of the embedded SmolLM2-135M
FAST = ("--no-imatrix", "--trials", "6", "--candidates", "2", "--eval-windows", "1",
        "--prompt-tokens", "32", "--max-new-tokens", "8", "--bench-requests", "2")


def advisor(*args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "advisor.cli", *args], capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("flag,value", [("--max-size", "lots"), ("--max-size", "0"),
                                        ("--p95", "3 fortnights"), ("--vram", "-4G"),
                                        ("--max-kld", "zero")])
def test_bad_targets_exit_2(tmp_path: Path, flag: str, value: str) -> None:
    r = advisor("recommend", flag, value, "--out", str(tmp_path / "out"))
    assert r.returncode == 2, r.stderr
    assert flag in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_a_budget_under_the_floor_gets_a_searched_pick_with_the_floor_relaxed(
        tmp_path: Path) -> None:
    """80 MB is under the embedded model's smallest plan with Q6_K on the embedding (85.5 MB)
    and under every preset (Q2_K: 88.2 MB): the search relaxes the floor and says so."""
    r = advisor("-q", "recommend", "--max-size", "80000000", *FAST, "--candidates", "1",
                "--presets", "1", "--out", str(tmp_path / "out"), "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["pick"]["kind"] == "search" and rep["size"]["value"] <= 80_000_000
    floor = rep["search"]["floor"]
    assert floor["relaxed"] and "85,514,816" in floor["why"]
    assert "floor relaxed" in rep["pick"]["reason"]
    assert rep["plan"]["tensor_formats"]["token_embd.weight"] not in ("Q6_K", "Q8_0", "F16")


@pytest.mark.slow
def test_infeasible_size_exits_3(tmp_path: Path) -> None:
    r = advisor("-q", "recommend", "--max-size", "10M", *FAST, "--out", str(tmp_path / "out"))
    assert r.returncode == 3, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("advisor: error:")
    assert "--max-size 10M" in lines[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_recommend_at_q3_k_m_size(tmp_path: Path) -> None:
    out = tmp_path / "pick"
    r = advisor("recommend", "--max-size", str(Q3_K_M_BYTES), *FAST, "--out", str(out),
                "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["pick"] == rep["pick"] and (out / "report.md").is_file()
    assert (out / "model.gguf").stat().st_size == on_disk["size"]["value"] <= Q3_K_M_BYTES

    rows = {c["label"]: c for c in rep["candidates"]}
    pick = rows[rep["pick"]["label"]]
    assert pick["size_measured"] <= Q3_K_M_BYTES and not pick["violations"]
    presets = [c for c in rep["candidates"] if c["kind"] == "preset" and not c["violations"]]
    assert "Q3_K_M" in {c["label"] for c in presets}  # stock presets are candidates
    assert pick["kl_measured"] <= min(c["kl_measured"] for c in presets)
    assert {c["kind"] for c in rep["candidates"]} == {"search", "preset"}
    assert pick["kl_measured"] > 0 and pick["p95"]["origin"] == "measured"
    # no p95 or memory target: the pick's bench is the only one that could matter
    assert [c["label"] for c in rep["candidates"] if c["benched"]] == [pick["label"]]
    assert all(c["p95"]["origin"] == "predicted" and "not benched" in c["memory"]["what"]
               for c in rep["candidates"] if c is not pick)
    assert set(rep["stage_seconds"]) >= {"inspect", "targets", "plan space", "sensitivity",
                                         "search", "realize", "measure", "pick", "emit"}
    assert rep["pareto_front"] and rep["pick"]["reason"]
    assert rep["search"]["storage"].endswith("pick.study.db")
    # the artifact serves as printed (issue 21: the make demo artifact's serve.sh), from a clean
    # shell, a chat of over 1,000 tokens, in the model's trained context
    from tests.cli.test_pipeline_cli import serve_and_chat

    assert rep["serve"]["context"] == 8192
    serving = tmp_path / "serving"
    serving.mkdir()
    serve_and_chat(out, serving)
    # the floor is a preference: one candidate of the whole space, one of the floored subspace
    # (the tied embedding at Q6_K or above), and the measured KL chose between them
    assert rep["search"]["floor_study"]["candidates"] == 1
    floored = [c for c in rep["candidates"] if c["label"].startswith("search-floor-")]
    assert len(floored) == 1 and sum(c["kind"] == "search" for c in rep["candidates"]) == 2
    plan = json.loads((out.parent / floored[0]["directory"] / "report.json").read_text())["plan"]
    assert plan["tensor_formats"]["token_embd.weight"] in ("Q6_K", "Q8_0")
    # the pick against the best preset, with its error bar: one window resolves nothing
    if pick["kind"] != "preset":
        v = rep["pick"]["versus_preset"]
        assert v["n_windows"] == 1 and not v["resolved"] and "not resolved" in \
            rep["pick"]["reason"]
    md = (out / "report.md").read_text()
    assert md.startswith(f"# Recommendation: {pick['label']}") and "| Q3_K_M |" in md


@pytest.mark.parametrize("args,flag", [
    (("--target", "rtx4090", "--vram", "10M"), "--vram"),
    (("--mem", "1M"), "--mem"),
])
def test_memory_budget_below_the_smallest_plan_exits_3_before_any_heavy_stage(
        tmp_path: Path, args: tuple[str, ...], flag: str) -> None:
    r = advisor("-q", "recommend", *args, *FAST, "--out", str(tmp_path / "out"), timeout=120)
    assert r.returncode == 3, r.stderr
    line = r.stderr.strip()
    assert len(line.splitlines()) == 1 and line.startswith("advisor: error:")
    assert flag in line and f"raise {flag} to at least" in line  # names the fix, with a number
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.candidates").exists()


@pytest.mark.slow
def test_unmeetable_p95_and_kld_exit_3_naming_the_binding_target(tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    r = advisor("-q", "recommend", "--max-size", str(Q3_K_M_BYTES), "--p95", "1ms", *FAST,
                "--out", out)
    assert r.returncode == 3, r.stderr
    line = r.stderr.strip()
    assert len(line.splitlines()) == 1 and "--p95 1ms" in line and "nearest" in line
    assert not (tmp_path / "out").exists()
    # none met the p95, so every candidate within the size was benched
    first = json.loads((tmp_path / "out.candidates" / "recommend.json").read_text())
    assert all(c["benched"] and c["p95"]["origin"] == "measured" for c in first["candidates"]
               if not c["violations"][0].startswith("size"))
    # the same candidates (reused from <out>.candidates), judged against an unreachable KL
    r = advisor("-q", "recommend", "--max-size", str(Q3_K_M_BYTES), "--max-kld", "1e-9", *FAST,
                "--out", out)
    assert r.returncode == 3, r.stderr
    line = r.stderr.strip()
    assert "--max-kld 1e-9" in line and "the best measured KL is" in line
    summary = json.loads((tmp_path / "out.candidates" / "recommend.json").read_text())
    best = min(c["kl_measured"] for c in summary["candidates"])
    assert f"{best:.4f}" in line  # the alternative it names is the real best
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_default_path_with_importance_matrix(tmp_path: Path) -> None:
    out = tmp_path / "pick"
    r = advisor("recommend", "--max-size", str(Q3_K_M_BYTES), "--trials", "4", "--candidates",
                "1", "--presets", "1", "--eval-windows", "1", "--prompt-tokens", "32",
                "--max-new-tokens", "8", "--bench-requests", "1", "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert len(rep["candidates"]) == 2 and not any(c["violations"] for c in rep["candidates"]
                                                   if c["label"] == rep["pick"]["label"])
    for c in rep["candidates"]:
        cand = json.loads((out.parent / c["directory"] / "report.json").read_text())
        assert cand["plan"]["options"].get("imatrix") is True, cand["plan"]["options"]
        # the table was measured with the importance values the candidate was quantized with
        assert cand["plan"]["options"]["imatrix_sha256"] == rep["search"]["imatrix_sha256"]
    assert rep["stage_peak_rss"]["sensitivity"] > 0


@pytest.mark.slow
def test_measured_trials_put_real_measurements_in_the_loop_and_resume(tmp_path: Path) -> None:
    out = tmp_path / "pick"
    args = ("recommend", "--max-size", str(Q3_K_M_BYTES), "--p95", "30s", "--measured-trials",
            "2", "--bench-all", *FAST, "--out", str(out), "--json")
    r = advisor(*args)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    m = rep["search"]["measured"]
    assert m["trials"] == 2 and m["evaluations"] >= 1 and m["limits"] == {"p95_s": 30.0}
    assert all(c["benched"] for c in rep["candidates"])  # --bench-all
    for t in m["trial_metrics"]:
        assert t["kl"] > 0 and t["p95_s"] > 0 and t["peak_rss"] > 0 and t["size"] <= Q3_K_M_BYTES
    # a measured plan that is not already a search candidate joins under its trial's label,
    # and its measured KL there is the trial's (same windows, same runtime)
    trials = {f"measured-{t['number']}": t for t in m["trial_metrics"]}
    for c in rep["candidates"]:
        if c["label"].startswith("measured-"):
            kl = trials[c["label"]]["kl"]
            assert abs(c["kl_measured"] - kl) <= 1e-6 + 1e-3 * kl
    # a rerun over the same storage evaluates nothing again
    import shutil

    shutil.rmtree(out)
    r = advisor(*args)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["search"]["measured"]["evaluations"] == 0
