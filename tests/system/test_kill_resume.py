"""Kill a real `advisor recommend` mid-search and mid-realize; the rerun with the same --out
resumes: finished trials are kept and not repeated, and only then is a report written."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from advisor.artifact import is_complete

pytestmark = pytest.mark.slow

TRIALS = 60  # a wide window: 20 surrogate trials could finish between two polls under load
ARGS = ["recommend", "--max-size", "93510208", "--no-imatrix", "--trials", str(TRIALS),
        "--candidates", "1", "--presets", "1", "--eval-windows", "1", "--bench-requests", "1",
        "--prompt-tokens", "32", "--max-new-tokens", "8"]


def _complete_trials(db: Path) -> dict[int, str]:
    """Trial number -> its parameters (as stored) of the COMPLETE trials in the SQLite study."""
    if not db.exists():
        return {}
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        rows = con.execute(
            "SELECT t.number, group_concat(p.param_name || '=' || p.param_value, ',') "
            "FROM trials t LEFT JOIN trial_params p ON p.trial_id = t.trial_id "
            "WHERE t.state = 'COMPLETE' GROUP BY t.trial_id").fetchall()
    except sqlite3.OperationalError:  # tables not created yet
        return {}
    finally:
        con.close()
    return {int(n): str(p) for n, p in rows}


@pytest.mark.parametrize("sig,stage", [(signal.SIGKILL, "search"), (signal.SIGINT, "search"),
                                       (signal.SIGTERM, "realize")])
def test_killed_recommend_resumes(tmp_path: Path, sig: signal.Signals, stage: str) -> None:
    out, db = tmp_path / "rec", tmp_path / "rec.study.db"
    cmd = [sys.executable, "-m", "advisor.cli", "-q", *ARGS, "--out", str(out)]
    err = tmp_path / "stderr.txt"
    with open(err, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=fh)
    deadline = time.monotonic() + 300
    try:
        while True:
            if stage == "search":
                ready = 3 <= len(_complete_trials(db)) < TRIALS
            else:  # llama.cpp is writing a candidate's weights
                ready = bool(list(tmp_path.glob("rec.candidates/.*.partial-*/model.gguf")))
            if ready:
                break
            assert proc.poll() is None, f"recommend ended before {stage}: {err.read_text()}"
            assert time.monotonic() < deadline, f"no {stage} stage in 300 s"
            time.sleep(0.05)
        proc.send_signal(sig)
        assert proc.wait(timeout=60) != 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # what is left is obviously incomplete: no report at --out
    assert not (out / "report.json").exists() and not is_complete(out)
    if sig != signal.SIGKILL:  # a handled signal removes its staging directory
        assert not list(tmp_path.glob("rec.candidates/.*.partial-*"))
    before = _complete_trials(db)
    # SIGKILL stops the search where it is. A SIGINT may land where it is swallowed and take
    # effect at the next stage boundary (advisor.progress.interrupt), after the study's last
    # trial: no report either way. On a faster instance that happened in 2 of 4 runs alone.
    if stage == "realize":
        assert len(before) == TRIALS
    else:
        assert before and len(before) < TRIALS if sig == signal.SIGKILL else len(before) <= TRIALS

    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert is_complete(out)
    after = _complete_trials(db)
    # finished trials are kept as they were, and the study holds exactly TRIALS finished ones:
    # the rerun ran only the missing ones (none when the search had finished)
    assert {n: after[n] for n in before} == before
    assert len(after) == TRIALS
    assert min(set(after) - set(before), default=max(before) + 1) > max(before)
