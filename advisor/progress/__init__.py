"""Progress display for long CLI stages: rich bars on stderr, silent for --json/--quiet."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

ProgressFn = Callable[[int, int], None]


class Stages:
    """One progress line per stage; `step(name)` shows a spinner, `bar(name)` a counted bar."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._progress = Progress(
            SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
            MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
            console=Console(stderr=True), transient=False, disable=not enabled,
        )

    def __enter__(self) -> Stages:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.__exit__(None, None, None)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        task = self._progress.add_task(name, total=None)
        yield
        self._progress.update(task, total=1, completed=1)

    @contextmanager
    def bar(self, name: str) -> Iterator[ProgressFn]:
        task = self._progress.add_task(name, total=None)

        def update(done: int, total: int) -> None:
            self._progress.update(task, completed=done, total=total)

        yield update
        t = self._progress.tasks[task]
        self._progress.update(task, completed=t.total or 1, total=t.total or 1)
