"""The first three steps of the wizard: hardware, model, targets. Each is a container the App
switches to; none does I/O on the UI thread (probing and inspection run in thread workers)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.validation import Function
from textual.widgets import Checkbox, Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from advisor.cli.console import shown
from advisor.errors import AdvisorError, BadInput
from advisor.hardware import HardwareProfile
from advisor.targets import parse_duration, parse_size
from advisor.tui.text import hardware_lines, option_label

HOST_ID = "host"


class HardwareStep(Vertical):
    """The probed host first (highlighted), then every catalogue target."""

    def __init__(self, catalogue: Sequence[HardwareProfile], id: str | None = None) -> None:
        super().__init__(id=id)
        self.catalogue = list(catalogue)
        self.host: HardwareProfile | None = None
        self.host_error: str | None = None

    def compose(self) -> ComposeResult:
        yield Static("[b]1. Hardware[/b]: where will the model run?  ↑/↓ choose, "
                     "enter or ctrl+n: next", classes="intro")
        with Horizontal():
            yield OptionList(Option("this host: probing…", id=HOST_ID),
                             *[Option(option_label(hw, probed=False), id=hw.name)
                               for hw in self.catalogue], id="hw-list")
            yield Static("probing this host…", id="hw-detail")

    def set_host(self, hw: HardwareProfile | None, error: str | None = None) -> None:
        self.host, self.host_error = hw, error
        ol = self.query_one(OptionList)
        text = (option_label(hw, probed=True) if hw
                else f"this host: probe failed ({shown(error)})")
        ol.replace_option_prompt(HOST_ID, text)
        self.show_detail(ol.highlighted or 0)

    def selected(self) -> tuple[str | None, HardwareProfile | None]:
        """(--target name or None for this host, its profile when known)."""
        index = self.query_one(OptionList).highlighted or 0
        if index == 0:
            return None, self.host
        hw = self.catalogue[index - 1]
        return hw.name, hw

    def show_detail(self, index: int) -> None:
        detail = self.query_one("#hw-detail", Static)
        if index == 0 and self.host is None:
            detail.update(shown(f"probe failed: {self.host_error}") if self.host_error
                          else "probing this host…")
            return
        hw = self.host if index == 0 else self.catalogue[index - 1]
        assert hw is not None
        lines = hardware_lines(hw)
        if index != 0:
            lines.append("[dim]catalogue target: memory and latency are predicted for it; "
                         "quality is measured here[/dim]")
        detail.update("\n".join(lines))

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        self.show_detail(event.option_index)


def _steady(widget: Input) -> Input:
    """No blinking cursor: over SSH every blink is a redraw, and screenshots stay stable."""
    widget.cursor_blink = False
    return widget


class ModelStep(Vertical):
    """The model: alias, .gguf or HF directory; its inspection summary once read."""

    def __init__(self, model: str, id: str | None = None) -> None:
        super().__init__(id=id)
        self.default = model

    def compose(self) -> ComposeResult:
        yield Static("[b]2. Model[/b]: an alias (smollm2-135m), a .gguf file or a Hugging Face "
                     "directory; enter inspects, ctrl+n: next", classes="intro")
        with Horizontal(classes="row"):
            yield Label("model", classes="name")
            yield _steady(Input(self.default, placeholder="smollm2-135m", id="model-input"))
        yield Static("", id="model-detail")


@dataclass(frozen=True)
class Field:
    """One target or setting: its flag, label, check (raises BadInput), hint."""

    key: str
    label: str
    hint: str
    check: Callable[[str], object]
    optional: bool = True


def _positive_int(flag: str) -> Callable[[str], int]:
    def check(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise BadInput(f"{flag} {text!r} is not an integer", "e.g. 8") from None
        if v < 1:
            raise BadInput(f"{flag} {text!r} must be >= 1", "pass a positive integer")
        return v
    return check


def _kld(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise BadInput(f"--max-kld {text!r} is not a number", "e.g. 0.05") from None
    if not 0 < v < float("inf"):
        raise BadInput(f"--max-kld {text!r} must be positive", "e.g. 0.05")
    return v


FIELDS = (
    Field("p95", "p95 latency", "e.g. 3s, 250ms; empty: no limit",
          lambda t: parse_duration(t, "--p95")),
    Field("mem", "memory", "e.g. 8G (VRAM on a GPU target); empty: device's",
          lambda t: parse_size(t, "memory")),
    Field("max-size", "max file size", "e.g. 4G, 512MiB, 93510208",
          lambda t: parse_size(t, "--max-size")),
    Field("max-kld", "max mean KL", "nats vs the reference; empty: no limit", _kld),
    Field("prompt-tokens", "prompt tokens", "workload: tokens per prompt",
          _positive_int("--prompt-tokens"), optional=False),
    Field("max-new-tokens", "new tokens", "workload: tokens generated",
          _positive_int("--max-new-tokens"), optional=False),
    Field("concurrency", "concurrency", "workload: concurrent requests",
          _positive_int("--concurrency"), optional=False),
    Field("trials", "search trials", "Optuna trials of the plan search",
          _positive_int("--trials"), optional=False),
    Field("eval-windows", "eval windows", "512-token windows scored per candidate",
          _positive_int("--eval-windows"), optional=False),
)


def field_error(f: Field, text: str) -> str | None:
    """The one-line problem with `text` for field `f`, or None when it is valid."""
    if not text.strip():
        return None if f.optional else f"{f.label} is required"
    try:
        f.check(text.strip())
    except AdvisorError as e:
        return e.one_line()
    return None


def _is_valid(f: Field) -> Callable[[str], bool]:
    def valid(text: str) -> bool:
        return field_error(f, text) is None
    return valid


class TargetsStep(VerticalScroll):
    """Targets and run settings, each validated as typed."""

    def __init__(self, values: dict[str, str], imatrix: bool, id: str | None = None) -> None:
        super().__init__(id=id)
        self.values = values
        self.imatrix = imatrix

    def compose(self) -> ComposeResult:
        yield Static("[b]3. Targets[/b]: limits the pick must meet and the workload; "
                     "enter: next field, ctrl+n: run", classes="intro")
        for f in FIELDS:
            with Horizontal(classes="row"):
                yield Label(f.label, classes="name")
                yield _steady(Input(self.values.get(f.key, ""), id=f"t-{f.key}",
                                    validators=[Function(_is_valid(f), f"invalid {f.label}")],
                                    valid_empty=f.optional))
                yield Label(f.hint, id=f"h-{f.key}", classes="hint")
        yield Checkbox("importance matrix (imatrix) for the types that use it", self.imatrix,
                       id="t-imatrix")
        yield Static("", id="targets-error")

    def on_input_changed(self, event: Input.Changed) -> None:
        self.refresh_hint(event.input)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.screen.focus_next()

    def refresh_hint(self, widget: Input) -> None:
        key = (widget.id or "")[2:]
        f = next((f for f in FIELDS if f.key == key), None)
        if f is None:
            return
        err = field_error(f, widget.value)
        hint = self.query_one(f"#h-{key}", Label)
        hint.update(f"[red]{shown(err)}[/red]" if err else f.hint)
        # the whole line below the form: a hint column cuts long messages at 80 columns
        self.query_one("#targets-error", Static).update(
            f"[red]{shown(err)}[/red]" if err else "")

    def read(self) -> tuple[dict[str, str], bool, list[str]]:
        """(the values as typed, imatrix, the problems: one line per invalid field)."""
        values, errors = {}, []
        for f in FIELDS:
            text = self.query_one(f"#t-{f.key}", Input).value.strip()
            values[f.key] = text
            err = field_error(f, text)
            if err:
                errors.append(err)
        return values, self.query_one(Checkbox).value, errors
