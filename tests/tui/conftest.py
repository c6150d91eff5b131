"""Deterministic inputs for the wizard: a catalogue profile as 'this host', a recorded report
(a real `advisor recommend` run, tests/report/data/recommendation.json) replayed by a scripted
runner, a fixed clock. The end-to-end test runs the real pipeline instead."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from advisor.artifact import staging, write_report
from advisor.tui.progress import TuiStages
from advisor.tui.run import RunRequest

RECORDED = Path(__file__).parent.parent / "report" / "data" / "recommendation.json"
SNAP_OUT = Path("/tmp/advisor-snapshot/out")


def recorded_report() -> dict[str, Any]:
    rep: dict[str, Any] = json.loads(RECORDED.read_text())
    return rep


def scripted_runner(block: bool = False, write: bool = False
                    ) -> Callable[[RunRequest, TuiStages, Callable[[dict[str, Any]], None]],
                                  dict[str, Any]]:
    """A runner that reports the stages and trials a real run reports, then either returns the
    recorded report, or (block) keeps a counted stage open until cancelled. With `write`, it
    works inside `staging(req.out)` as the pipeline does, so a cancel exercises the cleanup."""

    def run(req: RunRequest, stages: TuiStages,
            on_trial: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        rep = recorded_report()
        with stages.step(f"inspecting {req.model}"):
            pass
        with stages.bar("searching plans (3 trials)") as bar:
            for i, (nbytes, kl) in enumerate([(93_496_384, 0.0941), (89_998_848, 0.1788),
                                              (93_247_552, 0.1168)]):
                bar(i + 1, 3)
                on_trial({"number": i, "bytes": nbytes, "surrogate_kl": kl, "feasible": True,
                          "done": i + 1, "total": 3})
        if not block and not write:
            return rep
        with staging(req.out) as tmp:
            (tmp / "model.gguf").write_bytes(b"GGUF partial")
            with stages.bar("measuring candidates") as bar:
                bar(2, 5)
                while block:
                    time.sleep(0.02)
                    bar(2, 5)  # raises RunCancelled once the user cancels
            write_report(tmp, {k: v for k, v in rep.items() if k != "version"})
        return rep

    return run


@pytest.fixture()
def anyio_backend() -> str:
    """Pilot tests are coroutines run by anyio's pytest plugin, on asyncio (Textual's loop)."""
    return "asyncio"


@pytest.fixture()
def make_app() -> Callable[..., Any]:
    from advisor.probe import list_targets, load_target
    from advisor.tui import AdvisorApp

    def make(**kw: Any) -> AdvisorApp:
        args: dict[str, Any] = dict(hardware=load_target("x86-server"), catalogue=list_targets(),
                                    out=SNAP_OUT, runner=scripted_runner(),
                                    clock=lambda: 0.0, targets={"max-size": "93510208",
                                                                "trials": "3"})
        args.update(kw)
        return AdvisorApp(**args)

    return make
