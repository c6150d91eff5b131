"""Run a latency and memory benchmark of an artifact in a child process."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO

import advisor
from advisor.errors import AdvisorError, BadInput, Infeasible
from advisor.measure.latency.config import BenchTarget, BenchWorkload
from advisor.measure.latency.stats import summarize
from advisor.measure.latency.worker import PROGRESS_PREFIX
from advisor.measurement import BenchResult
from advisor.textdata import load_text

log = logging.getLogger(__name__)
_ERRORS: dict[str, type[AdvisorError]] = {"BadInput": BadInput, "Infeasible": Infeasible}


def _child_env() -> dict[str, str]:
    root = str(Path(advisor.__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


def run_bench(target: BenchTarget | str | Path, workload: BenchWorkload | None = None, *,
              text: str | None = None, threads: int = 0,
              on_progress: Callable[[int, int], None] | None = None,
              timeout_s: float | None = None) -> BenchResult:
    """Benchmark `target` under `workload` in `python -m advisor.measure.latency.worker`.

    `text` supplies the prompts' tokens (default: the evaluation text); `threads` is the compute
    threads of all streams together (0: all cores); `on_progress(done, total)` is called, in this
    thread, as measured requests complete.
    """
    if not isinstance(target, BenchTarget):
        target = BenchTarget(str(target))
    if not Path(target.path).exists():
        raise BadInput(f"artifact {target.path} does not exist", "realize the plan first")
    wl = workload or BenchWorkload()
    threads = threads or os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="qa-bench-") as tmp:
        result_path = Path(tmp) / "result.json"
        err_path = Path(tmp) / "stderr.txt"
        cfg = {"target": target.to_dict(), "workload": wl.to_dict(), "threads": threads,
               "text": text if text is not None else load_text(), "result_path": str(result_path)}
        with err_path.open("w") as err:
            rc = _run_child(cfg, err, on_progress, timeout_s)
        stderr_tail = err_path.read_text(errors="replace")[-2000:]
        payload = json.loads(result_path.read_text()) if result_path.is_file() else {}
    if "error" in payload:
        raise _ERRORS.get(payload.get("kind", ""), AdvisorError)(payload["error"], payload["fix"])
    if rc != 0 or "samples" not in payload:
        raise AdvisorError(f"the benchmark worker failed (exit code {rc}): {stderr_tail.strip()}")
    result = summarize(payload["samples"], wl, payload["wall_seconds"], payload["peak_rss"],
                       payload["baseline_rss"], payload["loaded_pss"], target.size_bytes(),
                       threads)
    log.info("bench %s: ttft %.3f s, %.4f s/token, p95 %.3f s, %.1f tok/s, peak RSS %.0f MiB",
             target.path, result.ttft.value, result.per_token.value, result.latency_p95.value,
             result.decode_tokens_per_s.value, result.peak_rss.value / 2**20)
    return result


def _run_child(cfg: dict[str, object], err: IO[str],
               on_progress: Callable[[int, int], None] | None, timeout_s: float | None) -> int:
    proc = subprocess.Popen(
        [sys.executable, "-m", "advisor.measure.latency.worker"], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=err, text=True, env=_child_env(),
    )
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        proc.kill()

    timer = threading.Timer(timeout_s, kill) if timeout_s else None
    if timer:
        timer.start()
    try:
        if proc.stdin is None or proc.stdout is None:  # both are PIPE; narrows the types
            raise AdvisorError("the benchmark worker has no pipes")
        proc.stdin.write(json.dumps(cfg))
        proc.stdin.close()
        for line in proc.stdout:
            if line.startswith(PROGRESS_PREFIX):
                done, total = (int(x) for x in line.split()[1:3])
                if on_progress:
                    on_progress(done, total)
            elif line.strip():
                log.debug("worker: %s", line.rstrip())
        rc = proc.wait()
    finally:
        if timer:
            timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if timed_out.is_set():
        raise AdvisorError(f"the benchmark ran past {timeout_s} s and was stopped",
                           "use fewer requests or a longer timeout")
    return rc
