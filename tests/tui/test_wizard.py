"""The wizard driven with Textual's Pilot: keyboard navigation, validation as typed, the
inputs handed to the pipeline, cancel without a half-written artifact, errors as one line."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import DataTable, Input, OptionList

from advisor.artifact import stale_partials
from advisor.errors import Infeasible
from advisor.probe import list_targets
from advisor.tui.app import AdvisorApp
from advisor.tui.run import RunRequest
from tests.tui.conftest import recorded_report, scripted_runner

pytestmark = pytest.mark.anyio


async def _wait(pilot: Any, cond: Callable[[], bool], timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if cond():
            return
        await pilot.pause(0.02)
    raise AssertionError("condition not reached")


async def _to_targets(pilot: Any) -> None:
    await pilot.press("ctrl+n")
    await pilot.app.workers.wait_for_complete()
    await pilot.press("ctrl+n")
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def _text(app: AdvisorApp, selector: str) -> str:
    return str(app.query_one(selector).render())


async def test_probed_host_first_and_keyboard_steps(make_app: Callable[..., Any]) -> None:
    probed = threading.Event()

    def probe() -> Any:
        probed.set()
        return next(t for t in list_targets() if t.name == "x86-server")

    app = make_app(hardware=None, probe=probe)
    async with app.run_test(size=(80, 24)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert probed.is_set() and app.step == "hardware"
        ol = app.query_one(OptionList)
        assert ol.highlighted == 0 and "(probed)" in str(ol.get_option_at_index(0).prompt)
        assert "x86-server" in _text(app, "#hw-detail")
        await pilot.press("down")
        assert list_targets()[0].name in _text(app, "#hw-detail")  # the catalogue's first
        await pilot.press("up", "enter")  # enter on the list: next step
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.step == "model" and "134,515,008" in _text(app, "#model-detail")
        await pilot.press("ctrl+n")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.step == "targets" and app.focused is app.query_one("#t-p95", Input)
        await pilot.press("ctrl+b")
        assert app.step == "model"
        await pilot.press("ctrl+b")
        assert app.step == "hardware"


async def test_failed_probe_still_offers_the_catalogue(make_app: Callable[..., Any]) -> None:
    def probe() -> Any:
        raise RuntimeError("no /proc here")

    app = make_app(hardware=None, probe=probe)
    async with app.run_test(size=(80, 24)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert "no /proc here" in _text(app, "#hw-detail")
        await pilot.press("down")
        assert list_targets()[0].name in _text(app, "#hw-detail")


async def test_bad_model_is_one_line_and_blocks_next(make_app: Callable[..., Any]) -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("ctrl+n")
        await app.workers.wait_for_complete()
        inp = app.query_one("#model-input", Input)
        inp.value = "/no/such/model.gguf"
        await pilot.press("ctrl+n")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.step == "model"
        assert "neither a known alias" in _text(app, "#model-detail")


async def test_targets_validated_as_typed_and_before_the_run(
        make_app: Callable[..., Any]) -> None:
    seen: list[RunRequest] = []

    def runner(req: RunRequest, stages: Any, on_trial: Any) -> dict[str, Any]:
        seen.append(req)
        return recorded_report()

    app = make_app(runner=runner)
    async with app.run_test(size=(80, 24)) as pilot:
        await _to_targets(pilot)
        await pilot.press(*"3 sec")
        assert "is not a duration" in _text(app, "#h-p95")
        assert app.query_one("#t-p95", Input).has_class("-invalid")
        await pilot.press("ctrl+n")  # refused: stays on the targets
        await pilot.pause()
        assert app.step == "targets" and not seen
        assert "is not a duration" in _text(app, "#targets-error")
        app.query_one("#t-p95", Input).value = "2s"
        app.query_one("#t-mem", Input).value = "8G"
        app.query_one("#t-max-kld", Input).value = "0.2"
        await pilot.pause()
        assert _text(app, "#targets-error") == ""
        await pilot.press("ctrl+n")
        await _wait(pilot, lambda: app.step == "results")
    req = seen[0]
    assert req.target is None and req.model == "smollm2-135m"
    assert req.targets.p95_s == 2.0 and req.targets.mem_bytes == 8 * 2**30
    assert req.targets.vram_bytes is None and req.targets.max_size_bytes == 93510208
    assert req.targets.max_kld == 0.2 and req.cfg.trials == 3
    assert req.cfg.flags == {"p95": "2s", "max-size": "93510208", "max-kld": "0.2", "mem": "8G"}


async def test_catalogue_gpu_target_takes_memory_as_vram(make_app: Callable[..., Any]) -> None:
    seen: list[RunRequest] = []

    def runner(req: RunRequest, stages: Any, on_trial: Any) -> dict[str, Any]:
        seen.append(req)
        return recorded_report()

    app = make_app(runner=runner)
    async with app.run_test(size=(80, 24)) as pilot:
        names = [hw.name for hw in app.catalogue]
        await pilot.press(*["down"] * (names.index("rtx4090") + 1))
        await _to_targets(pilot)
        app.query_one("#t-mem", Input).value = "24G"
        await pilot.press("ctrl+n")
        await _wait(pilot, lambda: bool(seen))
    assert seen[0].target == "rtx4090" and seen[0].targets.vram_bytes == 24 * 2**30
    assert seen[0].targets.mem_bytes is None


async def test_cancel_leaves_no_artifact(tmp_path: Path, make_app: Callable[..., Any]) -> None:
    out = tmp_path / "out"
    app = make_app(out=out, runner=scripted_runner(block=True, write=True))
    async with app.run_test(size=(80, 24)) as pilot:
        await _to_targets(pilot)
        await pilot.press("ctrl+n")
        await _wait(pilot, lambda: "measuring" in _text(app, "#run-stages"))
        assert stale_partials(out), "the run works in a staging directory beside --out"
        assert app.query_one("#run-trials", DataTable).row_count == 3
        assert "trial 0" in _text(app, "#run-best")
        await pilot.press("ctrl+b")  # refused while running
        assert app.step == "run"
        await pilot.press("escape")
        await _wait(pilot, lambda: not app.query_one("#run").running)
        assert "cancelled" in _text(app, "#run-status")
        assert app.exit_code == 130 and app.report is None
        await pilot.press("ctrl+b")
        assert app.step == "targets"
    assert not out.exists() and not stale_partials(out)


@pytest.mark.parametrize("exc,code", [(Infeasible("no measured candidate meets --p95 1ms",
                                                  "nearest: Q4_0 at 0.3 s"), 3)])
async def test_pipeline_error_shown_as_one_line(make_app: Callable[..., Any], exc: Exception,
                                                code: int) -> None:
    def runner(req: RunRequest, stages: Any, on_trial: Any) -> dict[str, Any]:
        with stages.step("inspecting"):
            pass
        raise exc

    app = make_app(runner=runner)
    async with app.run_test(size=(80, 24)) as pilot:
        await _to_targets(pilot)
        await pilot.press("ctrl+n")
        await _wait(pilot, lambda: app.query_one("#run").outcome is not None)
        await pilot.pause()
        assert "no measured candidate meets --p95 1ms" in _text(app, "#run-status")
        assert app.exit_code == code and app.step == "run"


async def test_results_show_pick_table_chart(make_app: Callable[..., Any]) -> None:
    app = make_app()
    rep = recorded_report()
    async with app.run_test(size=(80, 24)) as pilot:
        await _to_targets(pilot)
        await pilot.press("ctrl+n")
        await _wait(pilot, lambda: app.step == "results")
        assert f"Deploy {rep['pick']['label']}" in _text(app, "#res-summary")
        assert "./serve.sh" in _text(app, "#res-serve")
        table = app.query_one("#res-table", DataTable)
        assert table.row_count == len(rep["candidates"])
        picked = [table.get_row_at(i)[1] for i in range(table.row_count)
                  if table.get_row_at(i)[0] == "▶"]
        assert picked == [rep["pick"]["label"]]
        assert "@" in _text(app, "#res-chart")
        await pilot.press("c")  # copy: no error on a headless terminal
        assert app.step == "results"
