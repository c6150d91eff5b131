"""End to end: the wizard drives the real pipeline on the embedded model (targets typed in,
the run completes in a thread worker, the results step shows the measured pick)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from textual.widgets import DataTable, Input

from advisor.probe import get_hardware, list_targets
from advisor.recommend import RecommendConfig
from advisor.report import report_errors
from advisor.tui import AdvisorApp

pytestmark = [pytest.mark.slow, pytest.mark.anyio]


@pytest.fixture()
def anyio_backend() -> str:
    return "asyncio"


async def test_wizard_runs_the_real_pipeline(tmp_path: Path) -> None:
    out = tmp_path / "rec"
    trials_seen: list[int] = []
    app = AdvisorApp(probe=lambda: get_hardware(None, tmp_path), catalogue=list_targets(),
                     out=out, settings=RecommendConfig(candidates=1, presets_measured=1,
                                                       bench_requests=1, bench_warmup=0))
    async with app.run_test(size=(80, 24)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.press("ctrl+n")  # this host
        await app.workers.wait_for_complete()
        await pilot.press("ctrl+n")  # the default model, inspected
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.step == "targets"
        # typed as a user would: Q3_K_M's size of the embedded model, a short workload
        await pilot.press(*"60s", "enter", "enter", *"93510208", "enter", "enter")
        for key, value in (("prompt-tokens", "32"), ("max-new-tokens", "8"),
                           ("trials", "4"), ("eval-windows", "1")):
            app.query_one(f"#t-{key}", Input).value = value
        app.query_one("#t-imatrix").value = False
        await pilot.press("ctrl+n")
        assert app.step == "run"
        table = app.query_one("#run-trials", DataTable)
        for _ in range(3000):  # up to 5 min on 2 busy cores
            await pilot.pause(0.1)
            trials_seen.append(table.row_count)
            if not app.query_one("#run").running:
                break
        await pilot.pause()
        assert app.query_one("#run").outcome.error is None, _status(app)
        assert app.step == "results" and app.report is not None
        assert max(trials_seen) == 4  # every trial appeared as it finished
        assert app.query_one("#res-table", DataTable).row_count == len(app.report["candidates"])
        assert f"Deploy {app.report['pick']['label']}" in str(
            app.query_one("#res-summary").render())
    rep = json.loads((out / "report.json").read_text())
    assert report_errors(rep) == [] and rep["kind"] == "recommendation"
    assert rep["targets"]["p95_s"] == 60.0 and rep["targets"]["max_size_bytes"] == 93510208
    assert rep["search"]["trials"] == 4
    for name in ("report.md", "pareto.png", "candidates.csv", "serve.sh", "model.gguf"):
        assert (out / name).is_file(), name
    assert app.return_code in (0, None)


def _status(app: AdvisorApp) -> str:
    return str(app.query_one("#run-status").render())
