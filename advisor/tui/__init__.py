"""`advisor tui`: the Textual wizard (hardware → model → targets → run → results)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from advisor.tui.app import AdvisorApp

__all__ = ["AdvisorApp", "run_tui"]


def log_path(out: Path) -> Path:
    """Where the wizard's stderr goes while it owns the terminal: beside `--out`."""
    out = Path(out).expanduser().absolute()
    return out.with_name(out.name + ".tui.log")


def run_tui(model: str, target: str | None, out: Path) -> int:
    """Start the wizard on this terminal: the host probed in the background, the catalogue
    listed after it. Returns the run's exit code (0 when a pick was made or nothing ran).

    While it runs, file descriptor 2 (Python logging, Optuna, llama.cpp's C-level messages) goes
    to `<out>.tui.log`, so nothing written to stderr tears the screen; the UI itself is drawn
    on stdout.
    """
    import optuna

    from advisor.probe import get_hardware, list_targets

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    catalogue = list_targets()
    names = [hw.name for hw in catalogue]
    if target is not None and target not in names:
        from advisor.errors import BadInput

        raise BadInput(f"--target {target!r} is not in the catalogue",
                       f"one of {', '.join(names)} (or leave it out to use this host)")
    log_file = log_path(out)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    # Textual draws on sys.__stderr__; everything else that writes to fd 2 (Python logging,
    # llama.cpp's C-level messages, the bench child process) would tear the screen. So the
    # terminal moves to a duplicate descriptor that Textual gets as sys.__stderr__, and fd 2
    # goes to the log file until the wizard exits.
    terminal_fd = os.dup(2)
    terminal = os.fdopen(terminal_fd, "w", encoding="utf-8", errors="replace",
                         closefd=False)
    original, original_fd = sys.__stderr__, os.dup(2)
    with open(log_file, "a", encoding="utf-8") as fh:
        os.dup2(fh.fileno(), 2)
        sys.__stderr__ = terminal  # type: ignore[misc]
        try:
            app = AdvisorApp(probe=lambda: get_hardware(None, Path(out).absolute().parent),
                             catalogue=catalogue, model=model, out=Path(out),
                             initial_target=target)
            code = app.run()
        finally:
            sys.__stderr__ = original  # type: ignore[misc]
            terminal.flush()
            os.dup2(original_fd, 2)
            for fd in (original_fd, terminal_fd):
                os.close(fd)
    if log_file.stat().st_size == 0:
        log_file.unlink()
    else:
        from advisor.errors import printable

        sys.stderr.write(f"advisor: messages of the run are in {printable(log_file)}\n")
    return code or 0
