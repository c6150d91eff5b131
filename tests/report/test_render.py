"""report.md (summary first), candidates.csv, pareto.png, and `advisor report DIR`."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

from advisor.report import candidates_csv_text, render_files, render_markdown
from tests.report.test_schema import artifact, recommendation

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_markdown_summary_first_then_pareto_then_plan() -> None:
    rep = recommendation()
    md = render_markdown(rep)
    pick = next(c for c in rep["candidates"] if c["label"] == rep["pick"]["label"])
    order = [md.index(s) for s in (f"**Deploy** `{pick['label']}`", "**Serve**", "## Numbers",
                                   "## Candidates", "## Per-tensor plan")]
    assert order == sorted(order)
    assert f"`{rep['serve']['command']}`" in md
    assert f"{pick['kl_measured']:.4f} nats (measured)" in md
    # every candidate in the Pareto table, the front marked, the pick in bold
    for c in rep["candidates"]:
        assert f"| {c['label']} |" in md or f"| **{c['label']}** |" in md
    table = md[md.index("## Candidates"):md.index("## Per-tensor plan")]
    marked = [line.split("|")[1].strip(" *") for line in table.splitlines()
              if line.startswith("|") and line.rstrip().endswith("| * |")]
    assert sorted(marked) == sorted(rep["pareto_front"])
    # per-tensor plan: one row per layer, every tensor of the plan accounted for
    plan = md[md.index("## Per-tensor plan"):]
    assert plan.count("\n| 29 |") == 1
    assert f"{rep['plan']['tensor_formats']['blk.0.ffn_down.weight']} |" in \
        plan.split("\n| 0 |")[1].split("\n")[0]
    assert "`token_embd.weight`" in plan


def test_markdown_of_a_single_artifact() -> None:
    rep = artifact()
    md = render_markdown(rep)
    assert md.startswith(f"# Artifact `{rep['label']}`")
    assert "## Candidates" not in md and "## Per-tensor plan" in md
    assert "peak resident memory" in md  # without candidates, the bench figures themselves
    assert "p95 request latency" in md


def test_csv_has_every_candidate_with_origins() -> None:
    rep = recommendation()
    rows = list(csv.DictReader(io.StringIO(candidates_csv_text(rep))))
    assert [r["label"] for r in rows] == [c["label"] for c in rep["candidates"]]
    assert sum(int(r["pick"]) for r in rows) == 1
    assert {r["label"] for r in rows if r["pareto"] == "1"} == set(rep["pareto_front"])
    for r, c in zip(rows, rep["candidates"]):
        assert int(r["size_bytes_measured"]) == c["size_measured"]
        assert float(r["mean_kl_measured"]) == c["kl_measured"]
        assert r["p95_origin"] == c["p95"]["origin"] and r["memory_origin"] == c["memory"][
            "origin"]


def test_render_files_writes_png_csv_md(tmp_path: Path) -> None:
    written = render_files(recommendation(), tmp_path)
    assert sorted(p.name for p in written) == ["candidates.csv", "pareto.png", "report.md"]
    assert (tmp_path / "pareto.png").read_bytes()[:8] == PNG_MAGIC
    assert (tmp_path / "pareto.png").stat().st_size > 10_000
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    assert render_files(artifact(), tmp_path / ".." / tmp_path.name)  # md only for artifacts


def _advisor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "advisor.cli", *args], capture_output=True,
                          text=True, timeout=120)


def test_advisor_report_rerenders_from_json(tmp_path: Path) -> None:
    d = tmp_path / "art"
    d.mkdir()
    (d / "report.json").write_text(json.dumps(recommendation()))
    (d / "report.md").write_text("stale")
    r = _advisor("report", str(d), "--json")
    assert r.returncode == 0, r.stderr
    assert sorted(Path(p).name for p in json.loads(r.stdout)["written"]) == [
        "candidates.csv", "pareto.png", "report.md"]
    assert (d / "report.md").read_text() == render_markdown(recommendation())
    assert (d / "pareto.png").read_bytes()[:8] == PNG_MAGIC


def test_advisor_report_bad_input(tmp_path: Path) -> None:
    r = _advisor("report", str(tmp_path))
    assert r.returncode == 2 and "not a complete advisor artifact" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    bad = recommendation()
    bad["candidates"][0].pop("kl_measured")
    (tmp_path / "report.json").write_text(json.dumps(bad))
    r = _advisor("report", str(tmp_path))
    assert r.returncode == 2 and "does not match the report schema" in r.stderr
    assert not (tmp_path / "report.md").exists()
