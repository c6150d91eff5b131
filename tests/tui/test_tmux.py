"""`advisor tui` in a real terminal: tmux, 100x30. The first screen shows the probed host; the
keyboard moves between the steps; ctrl+q quits."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("tmux") is None,
                                 reason="tmux is not installed (tests/system/setup.sh installs "
                                        "it)")]


def _capture(session: str) -> str:
    return subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True,
                          text=True, check=True).stdout


def _wait_for(session: str, needle: str, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    screen = ""
    while time.monotonic() < deadline:
        screen = _capture(session)
        if needle in screen:
            return screen
        time.sleep(0.25)
    raise AssertionError(f"{needle!r} not on screen after {timeout}s:\n{screen}")


def test_tui_in_tmux(tmp_path: Path) -> None:
    from advisor.probe import get_hardware, list_targets

    host = get_hardware(None, tmp_path).name
    advisor = Path(sys.executable).with_name("advisor")
    session = f"advisor-tui-{tmp_path.name}"
    cmd = f"cd {tmp_path} && {advisor} tui --out {tmp_path / 'out'}; echo EXITED $? ; sleep 30"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "100", "-y", "30", cmd],
                   check=True)
    try:
        screen = _wait_for(session, f"this host: {host} (probed)")
        first = list_targets()[0].name  # the catalogue's first entry, under the probed host
        assert "1 Hardware" in screen and first in screen and "source: probed" in screen
        subprocess.run(["tmux", "send-keys", "-t", session, "C-n"], check=True)
        screen = _wait_for(session, "parameters   134,515,008")
        assert "▸2 Model" in screen
        subprocess.run(["tmux", "send-keys", "-t", session, "C-n"], check=True)
        screen = _wait_for(session, "prompt tokens")
        assert "▸3 Targets" in screen
        subprocess.run(["tmux", "send-keys", "-t", session, "C-b"], check=True)
        _wait_for(session, "▸2 Model")
        subprocess.run(["tmux", "send-keys", "-t", session, "C-q"], check=True)
        _wait_for(session, "EXITED 0", timeout=20)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
    assert not (tmp_path / "out").exists()  # nothing ran: nothing written
