"""SVG snapshots of each step of the wizard at 80x24 (pytest-textual-snapshot; update with
`pytest tests/tui --snapshot-update` after checking the new pictures by eye)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from textual.pilot import Pilot
from textual.widgets import DataTable

from tests.tui.conftest import scripted_runner


async def _settle(pilot: Pilot[Any]) -> None:
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def test_step1_hardware(snap_compare: Any, make_app: Callable[..., Any]) -> None:
    assert snap_compare(make_app(), run_before=_settle)


def test_step2_model(snap_compare: Any, make_app: Callable[..., Any]) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        await pilot.press("ctrl+n")
        await _settle(pilot)

    assert snap_compare(make_app(), run_before=before)


def test_step3_targets_with_an_invalid_value(snap_compare: Any,
                                             make_app: Callable[..., Any]) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        await pilot.press("ctrl+n")
        await _settle(pilot)
        await pilot.press("ctrl+n")
        await _settle(pilot)
        await pilot.press(*"3 sec")  # p95: not a duration; shown in red as typed

    assert snap_compare(make_app(), run_before=before)


def test_step4_run(snap_compare: Any, make_app: Callable[..., Any]) -> None:
    app = make_app(runner=scripted_runner(block=True))

    async def before(pilot: Pilot[Any]) -> None:
        await pilot.press("ctrl+n")
        await _settle(pilot)
        await pilot.press("ctrl+n")
        await _settle(pilot)
        await pilot.press("ctrl+n")
        for _ in range(200):
            await pilot.pause(0.02)
            if pilot.app.query_one("#run-trials", DataTable).row_count == 3 and \
                    "measuring" in str(pilot.app.query_one("#run-stages").render()):
                break

    assert snap_compare(app, run_before=before)  # closing the App cancels the blocked run


def test_step5_results(snap_compare: Any, make_app: Callable[..., Any]) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        for _ in range(3):
            await pilot.press("ctrl+n")
            await _settle(pilot)
        await pilot.pause(0.1)
        await _settle(pilot)

    assert snap_compare(make_app(), run_before=before)
