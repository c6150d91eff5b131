"""Progress of the pipeline as messages for the wizard: a `Stages` whose steps and bars call a
listener (the App, through `call_from_thread`) and check for cancellation at every update."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from advisor.progress import ProgressFn, Stages


class RunCancelled(BaseException):
    """Raised inside the pipeline's thread at its next progress update after a cancel.

    A BaseException, like KeyboardInterrupt, so that no `except Exception` on the way swallows
    it; `advisor.artifact.staging` removes its staging directory on it, and `--out` is left as
    it was (complete candidates already measured stay in `<out>.candidates` and are reused)."""


@dataclass(frozen=True)
class StageEvent:
    """One progress event: a stage started (`total` None: no count yet), advanced, or ended."""

    name: str
    kind: str  # "start" | "progress" | "end"
    done: int = 0
    total: int | None = None


Listener = Callable[[StageEvent], None]


class TuiStages(Stages):
    """Stages for the wizard: same interface as the CLI's rich bars, events to `listener`."""

    def __init__(self, listener: Listener, cancel: threading.Event | None = None) -> None:
        super().__init__(enabled=False)
        self.listener = listener
        self.cancel = cancel or threading.Event()

    def check(self) -> None:
        """Raise RunCancelled when a cancel was asked."""
        if self.cancel.is_set():
            raise RunCancelled()

    def __enter__(self) -> TuiStages:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        self.check()
        self.listener(StageEvent(name, "start"))
        yield
        self.listener(StageEvent(name, "end", 1, 1))
        self.check()

    @contextmanager
    def bar(self, name: str) -> Iterator[ProgressFn]:
        self.check()
        self.listener(StageEvent(name, "start"))
        last = [0, 0]

        def update(done: int, total: int) -> None:
            self.check()
            last[:] = [done, total]
            self.listener(StageEvent(name, "progress", done, total))

        yield update
        self.listener(StageEvent(name, "end", last[1] or 1, last[1] or 1))
        self.check()
