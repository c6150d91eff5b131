"""The wizard: hardware → model → targets → run → results, keyboard first, fits 80x24.

The App takes every input in its constructor (a hardware profile or a probe function, the
catalogue, the default model, the output directory, the pipeline runner, a clock), so tests
drive it with Textual's Pilot and snapshot it deterministically.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import ContentSwitcher, Footer, Input, OptionList, Static

from advisor.cli.console import shown
from advisor.errors import AdvisorError
from advisor.estimate import Workload
from advisor.hardware import HardwareProfile
from advisor.modelspec import ModelSpec
from advisor.recommend.config import RecommendConfig, targets_from_args
from advisor.tui.results import ResultsStep
from advisor.tui.run import Runner, RunRequest, RunStep, recommend_runner
from advisor.tui.steps import HardwareStep, ModelStep, TargetsStep
from advisor.tui.text import model_lines, serve_command

STEPS = ("hardware", "model", "targets", "run", "results")
TITLES = ("Hardware", "Model", "Targets", "Run", "Results")
_WL = Workload()
DEFAULT_TARGETS = {"prompt-tokens": str(_WL.prompt_tokens), "max-new-tokens": str(_WL.new_tokens),
                   "concurrency": str(_WL.concurrency)}
"""The workload fields' defaults: Workload's own (the CLI reads the same)."""


class AdvisorApp(App[int]):
    """`advisor tui`. Returns the exit code of the run (0 when a pick was made)."""

    TITLE = "quant-advisor"
    CSS_PATH = "wizard.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+n", "step_next", "Next", priority=True),
        Binding("ctrl+b", "step_back", "Back", priority=True),
        Binding("escape", "cancel", "Cancel run"),
        Binding("c", "copy", "Copy serve cmd"),
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ]

    def __init__(self, *, hardware: HardwareProfile | None = None,
                 probe: Callable[[], HardwareProfile] | None = None,
                 catalogue: Sequence[HardwareProfile] = (), model: str = "smollm2-135m",
                 out: Path = Path("advisor-out"), runner: Runner = recommend_runner,
                 inspect: Callable[[str], ModelSpec] | None = None,
                 targets: dict[str, str] | None = None,
                 settings: RecommendConfig = RecommendConfig(),
                 clock: Callable[[], float] = time.monotonic,
                 initial_target: str | None = None) -> None:
        super().__init__()
        if hardware is None and probe is None:
            raise ValueError("AdvisorApp needs hardware= or probe=")
        self.hardware, self.probe = hardware, probe
        self.catalogue = list(catalogue)
        self.model = model
        self.out = Path(out)
        self.runner = runner
        self.inspect_fn = inspect
        self.initial_targets = {**DEFAULT_TARGETS, "trials": str(settings.trials),
                                "eval-windows": str(settings.eval_windows), **(targets or {})}
        self.initial_target = initial_target
        self.settings = settings
        self.clock = clock
        self.spec: ModelSpec | None = None
        self.spec_for: str | None = None
        self.report: dict[str, Any] | None = None
        self.exit_code = 0

    # layout
    def compose(self) -> ComposeResult:
        yield Static("", id="crumbs")
        with ContentSwitcher(initial="hardware", id="steps"):
            yield HardwareStep(self.catalogue, id="hardware")
            yield ModelStep(self.model, id="model")
            yield TargetsStep(self.initial_targets, self.settings.imatrix, id="targets")
            yield RunStep(self.runner, self.clock, id="run")
            yield ResultsStep(id="results")
        yield Footer()

    def on_mount(self) -> None:
        self._crumbs()
        hw_list = self.query_one("#hw-list", OptionList)
        hw_list.focus()
        names = [hw.name for hw in self.catalogue]
        if self.initial_target in names:
            hw_list.highlighted = names.index(self.initial_target) + 1
        if self.hardware is not None:
            self.query_one(HardwareStep).set_host(self.hardware)
        else:
            self._probe()
        self.set_interval(1.0, self.query_one(RunStep).tick)

    @work(thread=True, exit_on_error=False, group="probe")
    def _probe(self) -> None:
        assert self.probe is not None
        try:
            hw, err = self.probe(), None
        except Exception as e:  # noqa: BLE001 - a failed probe still lets the user pick a target
            hw, err = None, str(e)
        self.call_from_thread(self.query_one(HardwareStep).set_host, hw, err)

    @property
    def step(self) -> str:
        return self.query_one(ContentSwitcher).current or "hardware"

    def _go(self, step: str) -> None:
        self.query_one(ContentSwitcher).current = step
        self._crumbs()
        focus = {"hardware": "#hw-list", "model": "#model-input", "targets": "#t-p95",
                 "run": "#run-trials", "results": "#results-tabs"}[step]
        self.query_one(focus).focus()
        self.refresh_bindings()
        if step == "model" and self.spec is None:
            self._inspect(self.query_one("#model-input", Input).value.strip(), advance=False)

    def _crumbs(self) -> None:
        current = self.step
        parts = [f"[reverse]▸{i + 1} {t} [/reverse]" if s == current else f" {i + 1} {t} "
                 for i, (s, t) in enumerate(zip(STEPS, TITLES))]
        self.query_one("#crumbs", Static).update("quant-advisor  " + "›".join(parts))

    # actions
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        run = self.query_one(RunStep)
        if action == "step_next":
            if self.step == "run":
                return True if self.report is not None and not run.running else None
            return self.step != "results"
        if action == "step_back":
            return self.step != "hardware" and (not run.running or None)
        if action == "cancel":
            return self.step == "run" and (run.running or None)
        if action == "copy":
            return self.step == "results"
        return True

    def action_step_next(self) -> None:
        step = self.step
        if step == "hardware":
            self._go("model")
        elif step == "model":
            self._inspect(self.query_one("#model-input", Input).value.strip(), advance=True)
        elif step == "targets":
            self._start_run()
        elif step == "run" and self.report is not None:
            self._go("results")

    def action_step_back(self) -> None:
        i = STEPS.index(self.step)
        if i > 0 and not self.query_one(RunStep).running:
            self._go(STEPS[i - 1] if STEPS[i - 1] != "run" else "targets")

    def action_cancel(self) -> None:
        self.query_one(RunStep).request_cancel()

    def action_copy(self) -> None:
        if self.report is not None:
            self.copy_to_clipboard(serve_command(self.report, str(self.out)))
            self.notify("serve command copied (OSC 52 clipboard)")

    async def action_quit(self) -> None:
        self.query_one(RunStep).cancel.set()  # the pipeline thread stops at its next update
        self.exit(self.exit_code)

    # events
    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        if self.step == "hardware":
            self._go("model")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "model-input":
            self._inspect(event.value.strip(), advance=False)

    @work(thread=True, exit_on_error=False, group="inspect", exclusive=True)
    def _inspect(self, model: str, advance: bool) -> None:
        if self.spec is not None and self.spec_for == model:
            if advance:
                self.call_from_thread(self._go, "targets")
            return
        self.call_from_thread(self._model_detail, f"inspecting {shown(model)}…")
        try:
            if self.inspect_fn is not None:
                spec = self.inspect_fn(model)
            else:
                from advisor.inspect import inspect_model

                spec = inspect_model(model)
        except AdvisorError as e:
            self.call_from_thread(self._model_detail, f"[red]{shown(e.one_line())}[/red]")
            return
        self.spec, self.spec_for = spec, model
        self.call_from_thread(self._model_detail, "\n".join(model_lines(spec)))
        if advance:
            self.call_from_thread(self._go, "targets")

    def _model_detail(self, text: str) -> None:
        self.query_one("#model-detail", Static).update(text)

    def _start_run(self) -> None:
        targets_step = self.query_one(TargetsStep)
        error = self.query_one("#targets-error", Static)
        values, imatrix, errors = targets_step.read()
        if errors:
            error.update(f"[red]{shown(errors[0])}[/red]")
            return
        target, hw = self.query_one(HardwareStep).selected()
        gpu = hw is not None and bool(hw.accelerators)
        try:
            targets = targets_from_args(
                prompt_tokens=int(values["prompt-tokens"]),
                new_tokens=int(values["max-new-tokens"]),
                concurrency=int(values["concurrency"]), context=0,
                vram=(values["mem"] or None) if gpu else None,
                mem=None if gpu else (values["mem"] or None),
                max_size=values["max-size"] or None, p95=values["p95"] or None,
                max_kld=values["max-kld"] or None)
            s = self.settings
            flags = {k: v for k, v in values.items()
                     if v and k in ("p95", "max-size", "max-kld")}
            if values["mem"]:
                flags["vram" if gpu else "mem"] = values["mem"]
            # the wizard's settings with what the targets step asks for
            cfg = replace(s, trials=int(values["trials"]),
                          eval_windows=int(values["eval-windows"]), imatrix=imatrix, flags=flags)
        except AdvisorError as e:
            error.update(f"[red]{shown(e.one_line())}[/red]")
            return
        error.update("")
        self.report = None
        model = self.query_one("#model-input", Input).value.strip() or self.model
        self._go("run")
        self.query_one(RunStep).start(RunRequest(model, targets, target, self.out, cfg))

    def on_run_step_finished(self, message: RunStep.Finished) -> None:
        o = message.outcome
        self.exit_code = o.exit_code
        if o.report is not None:
            self.report = o.report
            self.query_one(ResultsStep).show(o.report, self.out)
            self._go("results")
        self.refresh_bindings()
