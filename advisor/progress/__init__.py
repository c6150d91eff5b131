"""Progress display for long CLI stages: rich bars on a terminal's stderr, one plain line per
finished stage when stderr is a file or a pipe (no padding, no wrapping, no control codes: what a
log or a CI job keeps), silent for --json/--quiet."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from advisor.errors import printable

ProgressFn = Callable[[int, int], None]


class Stages:
    """One progress line per stage; `step(name)` shows a spinner, `bar(name)` a counted bar.

    `plain` (default: stderr is not a terminal) writes `name: done in 1.2 s` (with the count of
    a bar) to `stream` as each stage ends, instead of rich's live display. A stage's name may
    hold a model's name or a path: it is shown printable and literally (no markup)."""

    def __init__(self, enabled: bool, plain: bool | None = None,
                 stream: TextIO | None = None) -> None:
        self.enabled = enabled
        self._stream = stream or sys.stderr
        self.plain = (not self._stream.isatty()) if plain is None else plain
        self._progress = Progress(
            SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
            MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
            console=Console(stderr=True), transient=False,
            disable=not enabled or self.plain,
        )

    def _line(self, name: str, t0: float, count: str = "") -> None:
        if self.enabled and self.plain:
            self._stream.write(f"{printable(name)}: done{count} in "
                               f"{time.perf_counter() - t0:.1f} s\n")
            self._stream.flush()

    def __enter__(self) -> Stages:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.__exit__(None, None, None)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        task, t0 = self._progress.add_task(escape(printable(name)), total=None), time.perf_counter()
        yield
        self._progress.update(task, total=1, completed=1)
        self._line(name, t0)

    @contextmanager
    def bar(self, name: str) -> Iterator[ProgressFn]:
        task, t0 = self._progress.add_task(escape(printable(name)), total=None), time.perf_counter()

        def update(done: int, total: int) -> None:
            self._progress.update(task, completed=done, total=total)

        yield update
        t = self._progress.tasks[task]
        self._progress.update(task, completed=t.total or 1, total=t.total or 1)
        self._line(name, t0, f" ({int(t.completed)}/{int(t.total)})" if t.total else "")
