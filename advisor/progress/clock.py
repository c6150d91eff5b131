"""Wall time and peak memory of each stage of a run (the tool's own cost, in its reports).

Peak memory is sampled, not computed: a daemon thread reads the resident set size of this
process plus its live children (the bench runs in a child) every `interval` seconds while a
stage is open, so a spike shorter than the interval can be missed. Both figures are measured.
"""

from __future__ import annotations

import ctypes
import gc
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psutil

from advisor.progress import interrupt


def _rss_tree(proc: psutil.Process) -> int:
    total = 0
    try:
        total += proc.memory_info().rss
        for child in proc.children(recursive=True):
            try:
                total += child.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                pass
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        pass
    return total


def release_freed_memory() -> None:
    """Hand the C heap's free pages back to the system (glibc's malloc_trim; nothing elsewhere).

    glibc raises its mmap threshold up to 32 MB each time a mapped block is freed, so after a
    torch stage the freed arrays of a few MB sit in the heap, resident, for the rest of the run:
    after the streamed reference of a 1.7B model the process held 573 MiB, 474 MiB once trimmed.
    Called at the end of every stage and after each streamed sweep."""
    gc.collect()
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):  # musl and other C libraries: nothing to trim
            pass


class StageClock:
    """`with clock.stage("search"): ...` adds the stage's wall seconds to `seconds[name]` and its
    sampled peak RSS (bytes, this process and its children) to `peak_rss[name]`."""

    def __init__(self, interval: float = 0.25) -> None:
        # 0.05 s cost 39 s of CPU in a 450 s cold `recommend` (py-spy): psutil's children()
        # reads every /proc/<pid>/stat, on a 2-core host a core the measured work then lacks
        self.seconds: dict[str, float] = {}
        self.peak_rss: dict[str, int] = {}
        self._interval = interval
        self._proc = psutil.Process()

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        interrupt.check()  # a Ctrl-C swallowed in a ctypes callback stops the run here
        t0 = time.perf_counter()
        peak = [_rss_tree(self._proc)]
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(self._interval):
                peak[0] = max(peak[0], _rss_tree(self._proc))

        thread = threading.Thread(target=sample, name=f"rss-{name}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            peak[0] = max(peak[0], _rss_tree(self._proc))
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - t0, 3)
            self.peak_rss[name] = max(self.peak_rss.get(name, 0), peak[0])
            release_freed_memory()
        interrupt.check()
