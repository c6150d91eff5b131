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
    assert set(rep["stage_seconds"]) >= {"inspect", "targets", "plan space", "sensitivity",
                                         "search", "realize", "measure", "pick", "emit"}
    assert rep["pareto_front"] and rep["pick"]["reason"]
    assert rep["search"]["storage"].endswith("pick.study.db")
    md = (out / "report.md").read_text()
    assert md.startswith(f"# Recommendation: {pick['label']}") and "| Q3_K_M |" in md
