"""Step 4, the run: the pipeline in a thread worker; its stages, trials, best so far, elapsed and
remaining time; cancel (escape) stops it at its next progress update without touching `--out`."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, ProgressBar, Static

from advisor.cli.console import shown
from advisor.errors import AdvisorError, redact
from advisor.recommend.config import RecommendConfig
from advisor.targets import Targets
from advisor.tui.progress import RunCancelled, StageEvent, TuiStages

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunRequest:
    """Everything the pipeline needs, as the wizard collected it."""

    model: str
    targets: Targets
    target: str | None
    out: Path
    cfg: RecommendConfig


Runner = Callable[[RunRequest, TuiStages, Callable[[dict[str, Any]], None]], dict[str, Any]]
"""(request, stages, on_trial) -> the report written to request.out."""


def recommend_runner(req: RunRequest, stages: TuiStages,
                     on_trial: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """The real pipeline (advisor recommend)."""
    from advisor.recommend import recommend

    return recommend(req.model, req.targets, req.target, req.out, req.cfg, stages,
                     on_trial=on_trial)


@dataclass(frozen=True)
class Outcome:
    """How a run ended: a report, an error line (exit code), or cancelled."""

    report: dict[str, Any] | None = None
    error: str | None = None
    exit_code: int = 0
    cancelled: bool = False


def _clock_text(seconds: float) -> str:
    s = max(0, int(seconds))
    return f"{s // 60}:{s % 60:02d}"


class RunStep(Vertical):
    """Live progress of one run."""

    class Progress(Message):
        def __init__(self, event: StageEvent) -> None:
            super().__init__()
            self.event = event

    class Trial(Message):
        def __init__(self, info: dict[str, Any]) -> None:
            super().__init__()
            self.info = info

    class Finished(Message):
        def __init__(self, outcome: Outcome) -> None:
            super().__init__()
            self.outcome = outcome

    def __init__(self, runner: Runner, clock: Callable[[], float], id: str | None = None) -> None:
        super().__init__(id=id)
        self.runner = runner
        self.clock = clock
        self.cancel = threading.Event()
        self.running = False
        self.outcome: Outcome | None = None
        self.request: RunRequest | None = None
        self._t0 = 0.0
        self._stage_t0 = 0.0
        self._stages: list[tuple[str, str]] = []  # (name, state mark)
        self._counted: tuple[int, int] | None = None
        self._best: dict[str, Any] | None = None

    def compose(self) -> ComposeResult:
        yield Static("[b]4. Run[/b]", id="run-title", classes="intro")
        yield Static("", id="run-stages")
        yield ProgressBar(total=None, show_eta=False, id="run-bar")
        yield Static("", id="run-time")
        yield Static("", id="run-best")
        table: DataTable[str] = DataTable(id="run-trials", cursor_type="row", zebra_stripes=True)
        table.add_columns("trial", "size (pred)", "surrogate KL (pred)", "fits")
        yield table
        yield Static("", id="run-status")

    def start(self, req: RunRequest) -> None:
        self.request, self.outcome, self.running = req, None, True
        self.cancel = threading.Event()
        self._t0 = self._stage_t0 = self.clock()
        self._stages, self._counted, self._best = [], None, None
        target = req.target or "this host"
        self.query_one("#run-title", Static).update(
            f"[b]4. Run[/b]: {shown(req.model)} on {shown(target)} → {shown(str(req.out))}  "
            "[dim](escape: cancel)[/dim]")
        self.query_one("#run-trials", DataTable).clear()
        self.query_one("#run-status", Static).update("")
        self.query_one("#run-best", Static).update("best so far: -")
        self._redraw()
        self._work(req)

    @work(thread=True, exit_on_error=False, group="pipeline", exclusive=True)
    def _work(self, req: RunRequest) -> None:
        def progress(event: StageEvent) -> None:
            self.post_message(self.Progress(event))  # thread-safe

        def trial(info: dict[str, Any]) -> None:
            self.post_message(self.Trial(info))

        stages = TuiStages(progress, self.cancel)
        try:
            report = self.runner(req, stages, trial)
            outcome = Outcome(report=report)
        except RunCancelled:
            outcome = Outcome(cancelled=True, exit_code=130)
        except AdvisorError as e:
            outcome = Outcome(error=e.one_line(), exit_code=e.exit_code)
        except Exception as e:  # noqa: BLE001 - shown in the UI as the CLI would print it
            log.exception("the pipeline failed")
            outcome = Outcome(error=f"internal error: {type(e).__name__}: {redact(e)}",
                              exit_code=1)
        self.post_message(self.Finished(outcome))

    def on_unmount(self) -> None:
        # the App is closing: stop the pipeline thread at its next update (the event loop waits
        # for its executor's threads before the process can exit)
        self.cancel.set()

    def request_cancel(self) -> None:
        if self.running:
            self.cancel.set()
            self.query_one("#run-status", Static).update(
                "[yellow]cancelling at the next progress update…[/yellow]")

    def on_run_step_progress(self, message: Progress) -> None:
        e = message.event
        if e.kind == "start":
            self._stages.append((e.name, "▸"))
            self._stage_t0 = self.clock()
            self._counted = None
        elif e.kind == "progress" and e.total:
            self._counted = (e.done, e.total)
        elif e.kind == "end":
            self._stages = [(n, "✓" if n == e.name and m == "▸" else m)
                            for n, m in self._stages]
            self._counted = None
        self._redraw()

    def on_run_step_trial(self, message: Trial) -> None:
        t = message.info
        table = self.query_one("#run-trials", DataTable)
        table.add_row(str(t["number"]), f"{t['bytes'] / 1e6:.2f} MB", f"{t['surrogate_kl']:.4f}",
                      "yes" if t["feasible"] else "no")
        table.move_cursor(row=table.row_count - 1)
        if t["feasible"] and (self._best is None
                              or t["surrogate_kl"] < self._best["surrogate_kl"]):
            self._best = t
        if self._best is not None:
            b = self._best
            self.query_one("#run-best", Static).update(
                f"best so far: trial {b['number']}, {b['bytes'] / 1e6:.2f} MB, surrogate KL "
                f"{b['surrogate_kl']:.4f} nats (predicted; measured after the search)  "
                f"[dim]{t['done']}/{t['total']} trials[/dim]")

    def on_run_step_finished(self, message: Finished) -> None:
        self.running, self.outcome = False, message.outcome
        o = message.outcome
        status = self.query_one("#run-status", Static)
        out = self.request.out if self.request else "?"
        if o.cancelled:
            status.update(f"[yellow]cancelled: nothing written at {shown(str(out))}; measured "
                          "candidates are kept and reused by the next run. ctrl+b: back[/yellow]")
        elif o.error:
            status.update(f"[red]{shown(o.error)}[/red]  [dim]ctrl+b: back to the targets"
                          "[/dim]")
        self._redraw()

    def tick(self) -> None:
        if self.running:
            self._redraw()

    def _redraw(self) -> None:
        lines = [f"{m} {shown(n)}" for n, m in self._stages[-5:]] or ["starting…"]
        self.query_one("#run-stages", Static).update("\n".join(lines))
        bar = self.query_one("#run-bar", ProgressBar)
        if self._counted:
            bar.update(total=self._counted[1], progress=self._counted[0])
        else:
            bar.update(total=None if self.running else 1, progress=0 if self.running else 1)
        now = self.clock()
        remaining = "-"
        if self._counted and self._counted[0] > 0 and now > self._stage_t0:
            done, total = self._counted
            remaining = "~" + _clock_text((now - self._stage_t0) * (total - done) / done)
        state = "running" if self.running else "finished" if self.outcome and \
            self.outcome.report else "stopped"
        self.query_one("#run-time", Static).update(
            f"{state} · elapsed {_clock_text(now - self._t0)} · this stage remaining "
            f"{remaining}")
