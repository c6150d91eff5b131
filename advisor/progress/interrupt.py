"""Ctrl-C that cannot be lost in a ctypes callback.

Python's own SIGINT handler raises KeyboardInterrupt at the next bytecode, and when that bytecode
is inside a ctypes callback (llama.cpp's log callback during an evaluation, quantization's
progress callback) ctypes prints the exception and swallows it: the run went on and wrote its
report with exit code 0 (seen in tests/system/test_kill_resume.py). The CLI installs `handler`,
which also remembers the signal, and `check()` (called at every stage boundary by
advisor.progress.clock) raises KeyboardInterrupt again if one was swallowed, before anything after
it is written.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

_received: list[int] = []


def handler(signum: int, frame: FrameType | None) -> None:
    _received.append(signum)
    raise KeyboardInterrupt


def install() -> None:
    """Use `handler` for SIGINT (main thread only; elsewhere Python's default stays)."""
    if threading.current_thread() is threading.main_thread():
        _received.clear()
        signal.signal(signal.SIGINT, handler)


def check() -> None:
    """Raise KeyboardInterrupt if a SIGINT arrived since `install()` (once per signal)."""
    if _received:
        _received.clear()
        raise KeyboardInterrupt
