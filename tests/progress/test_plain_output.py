"""Output when stdout/stderr are not a terminal (a log file, a CI job): one plain line per finished
stage, no padding, no wrapping, no control codes."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

from advisor.progress import Stages


def test_plain_stages_write_one_line_per_finished_stage() -> None:
    out = io.StringIO()
    with Stages(enabled=True, plain=True, stream=out) as s:
        with s.step("reading /a/very/long/path/" + "x" * 120 + "/model.gguf"):
            pass
        with s.bar("sensitivity table") as update:
            update(3, 7)
            update(7, 7)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].startswith("reading /a/very/long/path/" + "x" * 120)
    assert lines[1].startswith("sensitivity table: done (7/7) in ")
    quiet = io.StringIO()
    with Stages(enabled=False, plain=True, stream=quiet) as s, s.step("x"):
        pass
    assert quiet.getvalue() == ""


def test_a_piped_cli_run_has_no_padding_wrapping_or_escapes(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "advisor.cli", "quantize", "--preset", "Q8_0",
                        "--out", str(tmp_path / "q8"), "--no-imatrix"], capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    assert lines and not any(line != line.rstrip() or "\x1b" in line for line in lines)
    assert any(": done in " in line for line in lines)
    # the result table too: unpadded, and the path of the artifact is never broken
    out = r.stdout.splitlines()
    assert out and not any(line != line.rstrip() or "\x1b" in line for line in out)
    assert any(f"cd {tmp_path / 'q8'} && ./serve.sh" in line for line in out)
