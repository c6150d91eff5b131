"""Run one `advisor` command as a child process: wall time, peak RSS of its process tree, and a
log of every command run (BENCHMARKS.md lists them)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from advisor.progress.clock import _rss_tree


@dataclass
class Ran:
    argv: list[str]
    seconds: float
    peak_rss: int
    stdout: str

    def json(self) -> Any:
        return json.loads(self.stdout)


@dataclass
class Runner:
    """Runs `advisor ARGS` with this interpreter; `env` is added to the environment."""

    log: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    verbose: bool = True
    quick: bool = False  # --quick: fewer held-out windows and bench requests (code paths only)

    def advisor(self, *args: str | Path, env: dict[str, str] | None = None,
                note: str = "") -> Ran:
        argv = [str(a) for a in args]
        shown = "advisor " + shlex.join(argv)
        extra = {**self.env, **(env or {})}
        prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in (env or {}).items())
        self.log.append((prefix + " " if prefix else "") + shown + (f"  # {note}" if note else ""))
        if self.verbose:
            print(f"[bench] {shown}", file=sys.stderr, flush=True)
        ran = run([sys.executable, "-m", "advisor.cli", *argv], {**os.environ, **extra})
        if self.verbose:
            print(f"[bench]   {ran.seconds:.1f} s, peak RSS {ran.peak_rss / 2**20:.0f} MiB",
                  file=sys.stderr, flush=True)
        return ran


def run(argv: list[str], env: dict[str, str]) -> Ran:
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    ps = psutil.Process(proc.pid)
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            peak[0] = max(peak[0], _rss_tree(ps))

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    out, err = proc.communicate()
    done.set()
    thread.join()
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} exited {proc.returncode}: {err.strip()[-2000:]}")
    return Ran(argv, seconds, peak[0], out)
