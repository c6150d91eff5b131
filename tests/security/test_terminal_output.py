"""What a model file or a path says reaches the terminal as text (issue 22, finding 7): rich or
Textual markup in `general.name` is shown literally, ANSI/OSC escape codes and control
characters never reach the terminal, `--out 'smol[v2]'` is printed as given."""

from __future__ import annotations

import io
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from rich.console import Console
from rich.text import Text

from advisor.errors import BadInput, printable

# rich markup, an OSC window-title change ended by BEL, an SGR colour, C0/C1 controls
EVIL = "smol [bold red]x[/] \x1b]0;pwn\x07 \x1b[31mred\x1b[0m \x9b2J\x08\x7f\x85 é 日本 🙂\tend"


def _clean(text: str) -> None:
    assert "\x1b" not in text and "\x07" not in text and "\x9b" not in text, repr(text)
    assert not any(ord(c) < 32 and c not in "\t\n" or 0x7f <= ord(c) <= 0x9f for c in text)


def test_printable_strips_escape_codes_and_controls_and_keeps_unicode() -> None:
    out = printable(EVIL)
    _clean(out)
    assert out == "smol [bold red]x[/]  red  é 日本 🙂\tend"
    assert printable("a\nb") == "a b" and printable("a\r\nb\x1b[2K", newlines=True) == "a\nb"
    # bidirectional overrides ("Trojan Source"): "model\u202egguf.exe" would print reversed
    assert printable("model\u202egguf.exe\u2066x\u2069\u200f") == "modelgguf.exex"
    # a message of the model's strings (unsupported architecture ...) leaves the CLI printable
    _clean(BadInput(f"unsupported architecture {EVIL!s}", "use llama").one_line())


@pytest.fixture()
def evil_gguf(tmp_path: Path) -> Path:
    from tests.fuzz.builders import gguf_bytes

    path = tmp_path / "evil.gguf"
    path.write_bytes(gguf_bytes(extra_kv={"general.name": EVIL}))
    return path


def _advisor(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "advisor.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_inspect_shows_a_hostile_general_name_as_text(evil_gguf: Path) -> None:
    r = _advisor(evil_gguf.parent, "inspect", "--model", str(evil_gguf), "--tensors")
    assert r.returncode == 0, r.stderr
    _clean(r.stdout)
    _clean(r.stderr)
    assert "smol [bold red]x[/]  red  é 日本 🙂" in r.stdout.splitlines()[0]


def test_a_terminal_gets_the_name_literally_and_no_foreign_escape_codes(
        evil_gguf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a terminal rich styles its own output; the model's codes are gone and its markup is
    text (rich would otherwise read `[bold red]x[/]` as a style and drop it)."""
    from advisor.cli import console as cli_console
    from advisor.inspect import inspect_model

    buf = io.StringIO()
    monkeypatch.setattr(cli_console, "console", lambda: Console(
        file=buf, force_terminal=True, color_system="truecolor", width=200, highlight=False))
    cli_console.show_model(inspect_model(str(evil_gguf)), tensors=True)
    raw = buf.getvalue()
    assert "\x07" not in raw and "\x1b]" not in raw and "\x9b" not in raw
    plain = Text.from_ansi(raw).plain
    assert "smol [bold red]x[/]" in plain and "[31m" not in plain


def test_out_path_with_brackets_is_printed_as_given(tmp_path: Path) -> None:
    """`quantize --out 'smol[v2]'` said `wrote smol` and `cd smol`: rich read `[v2]` as a tag."""
    from tests.formats.synth import synthetic_spec, write_gguf

    model = write_gguf(synthetic_spec(n_layers=1, hidden=64, ffn=128, vocab=64, n_kv_heads=4),
                       tmp_path / "tiny.gguf")
    r = _advisor(tmp_path, "quantize", "--model", str(model), "--preset", "Q8_0", "--out",
                 "smol[v2]")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "smol[v2]").is_dir()
    # quoted for the shell: [v2] would be a glob, a space would split the path
    assert "wrote smol[v2] " in r.stdout and "cd 'smol[v2]' && ./serve.sh" in r.stdout, r.stdout


def test_progress_lines_show_names_as_text() -> None:
    """A stage is named after the model or the path (`quantizing <general.name> ...`)."""
    from rich.markup import escape

    from advisor.progress import Stages

    stream = io.StringIO()
    with Stages(enabled=True, plain=True, stream=stream) as s, s.step(f"quantizing {EVIL}"):
        pass
    _clean(stream.getvalue())
    assert stream.getvalue().startswith("quantizing smol [bold red]x[/]")
    live = Stages(enabled=False, plain=False)  # the rich bars' task text is escaped markup
    with live.bar("writing the artifact to smol[v2]"):
        pass
    assert live._progress.tasks[0].description == escape("writing the artifact to smol[v2]")


def test_tui_panels_show_names_as_text() -> None:
    """The wizard's panels are Textual markup: a model's name and a path stay literal there."""
    from textual.content import Content

    from advisor.tui.text import model_lines, summary_lines
    from tests.formats.synth import synthetic_spec

    spec = replace(synthetic_spec(n_layers=1, hidden=64, ffn=128, vocab=64), name=EVIL,
                   architecture="llama[v2]\x1b[5m")
    lines = model_lines(spec)
    shown = Content.from_markup("\n".join(lines)).plain
    _clean(shown)
    assert "smol [bold red]x[/]" in shown and "llama[v2]" in shown
    rep = {"candidates": [{"label": "Q4_K_M", "kind": "preset", "size_measured": 1e6,
                           "kl_measured": 0.1, "p95": {"value": 0.1, "origin": "measured"},
                           "memory": {"value": 1e6, "origin": "measured"}}],
           "pick": {"label": "Q4_K_M", "reason": "[red]why\x1b]8;;http://x\x07"},
           "model": {"name": EVIL}, "hardware": {"name": "host[1]"}}
    shown = Content.from_markup("\n".join(summary_lines(rep, "smol[v2]"))).plain
    _clean(shown)
    assert "smol [bold red]x[/]" in shown and "host[1]" in shown and "[red]why" in shown
