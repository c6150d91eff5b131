"""Every report the tool writes validates against the published schema: `advisor quantize`,
then `advisor eval` and `advisor bench` updating it, then `advisor report` re-rendering it (the
recommendation report is checked by tests/tui/test_wizard_slow.py and, through the validation
in write_report, by every test that runs `advisor recommend`). Global `--json` prints only
JSON on stdout."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from advisor.report import report_errors

pytestmark = pytest.mark.slow


def _json(*args: str) -> Any:
    r = subprocess.run([sys.executable, "-m", "advisor.cli", "--json", *args],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)  # stdout is JSON and nothing else


def _report(d: Path) -> dict[str, Any]:
    rep: dict[str, Any] = json.loads((d / "report.json").read_text())
    assert report_errors(rep) == [], report_errors(rep)
    return rep


def test_quantize_eval_bench_reports_validate(tmp_path: Path) -> None:
    art = tmp_path / "q8"
    printed = _json("quantize", "--preset", "Q8_0", "--no-imatrix", "--out", str(art))
    rep = _report(art)
    assert rep["kind"] == "artifact" and rep["measurements"] == {}
    assert printed["plan"]["digest"] == rep["plan"]["digest"]
    _json("eval", "--artifact", str(art), "--max-windows", "1")
    assert set(_report(art)["measurements"]) == {"quality"}
    _json("bench", "--artifact", str(art), "--requests", "1", "--warmup", "0",
          "--prompt-tokens", "16", "--max-new-tokens", "4")
    rep = _report(art)
    assert set(rep["measurements"]) == {"quality", "bench"}
    written = _json("report", str(art))["written"]
    assert [Path(p).name for p in written] == ["report.md"]
    md = (art / "report.md").read_text()
    assert md.startswith("# Artifact `Q8_0`") and "mean KL vs the reference" in md
