"""The wizard's text panels as pure functions."""

from __future__ import annotations

from advisor.probe import load_target
from advisor.tui.text import option_label, pareto_chart, serve_command
from tests.tui.conftest import recorded_report


def test_pareto_chart_marks_pick_front_and_others() -> None:
    rep = recorded_report()
    lines = pareto_chart(rep, width=30, height=6)
    grid = "\n".join(lines[:6])
    assert grid.count("@") == 1
    front = [c for c in rep["candidates"] if c["label"] in rep["pareto_front"]]
    assert grid.count("*") + grid.count("@") == len(front)
    assert grid.count("o") == len(rep["candidates"]) - len(front)
    # the pick has the lowest KL: bottom row; the largest KL: top row
    assert "@" in lines[5]
    worst = max(rep["candidates"], key=lambda c: c["kl_measured"])
    assert f"{worst['kl_measured']:8.4f}" in lines[0]
    assert any(line.startswith("@ " + rep["pick"]["label"]) for line in lines)


def test_option_labels_fit_the_list() -> None:
    hw = load_target("rtx4090")
    assert option_label(hw, probed=False).split() == ["rtx4090", "24", "GiB", "GPU"]
    assert option_label(hw, probed=True) == "this host: rtx4090 (probed)"


def test_serve_command_is_ready_to_paste() -> None:
    assert serve_command(recorded_report(), "/srv/out") == "cd /srv/out && ./serve.sh"
