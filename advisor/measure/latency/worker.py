"""The benchmark's child process: `python -m advisor.measure.latency.worker < config.json`.

Runs in its own process so that its peak resident memory is the artifact's alone (not the
advisor's). Concurrency C is C threads, each with its own Runner (its own llama context and model
load over the same file) and threads // C compute threads: the Runner protocol serves one
sequence at a time, so this measures C independent streams sharing the cores and the memory
bandwidth, not a batching server (llama-server with -np C batches the C sequences into one
decode, which a later bench mode can measure). Progress goes to stdout as `@@progress done
total` lines; the result (raw samples and memory) to the JSON file the config names.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from advisor.errors import AdvisorError, BadInput
from advisor.measure.latency.config import BenchTarget, BenchWorkload
from advisor.measure.latency.stats import request_samples
from backends.base import Runner

log = logging.getLogger(__name__)
PROGRESS_PREFIX = "@@progress"


def peak_rss_bytes() -> int:
    """Peak resident set of this process since its exec.

    Linux: VmHWM of /proc/self/status. Not ru_maxrss: the kernel carries the pre-exec address
    space's high-water mark into it, so after Python's vfork+exec a child reports its parent's
    peak (measured: 811 MiB for a 10 MiB child of an 800 MiB parent).
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # macOS: bytes; others: KiB


def current_rss_bytes() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def current_pss_bytes() -> int:
    """Proportional set size: pages mapped twice (the same weights file mmapped by C runners)
    count once, which RSS does not (measured: 2 runners of the embedded model, RSS 280 MiB,
    PSS 176 MiB). Linux only; elsewhere the RSS."""
    try:
        with open("/proc/self/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return current_rss_bytes()


def open_runner(target: BenchTarget, n_ctx: int, threads: int) -> Runner:
    from backends import get_backend

    return get_backend(target.backend or "gguf").load(Path(target.path), n_ctx=n_ctx,
                                                      threads=threads)


def build_prompts(tokens: list[int], prompt_tokens: int, count: int) -> list[list[int]]:
    """`count` prompts of `prompt_tokens` consecutive text tokens, a new slice each (wrapping)."""
    span = len(tokens) - prompt_tokens + 1
    if span < 1:
        raise BadInput(f"the prompt text has {len(tokens)} tokens; a prompt needs {prompt_tokens}",
                       "give a longer text or fewer prompt tokens")
    return [tokens[(i * prompt_tokens) % span:][:prompt_tokens] for i in range(count)]


def run(cfg: dict[str, Any], on_progress: Callable[[int, int], None]) -> dict[str, Any]:
    """Load the runners, warm them up, run the measured phase; raw samples and memory."""
    target = BenchTarget.from_dict(cfg["target"])
    wl = BenchWorkload.from_dict(cfg["workload"])
    threads = int(cfg.get("threads") or os.cpu_count() or 1)
    per_stream = max(1, threads // wl.concurrency)
    baseline = current_rss_bytes()
    runners: list[Runner] = []
    try:
        for _ in range(wl.concurrency):
            runners.append(open_runner(target, wl.n_ctx, per_stream))
        prompts = build_prompts(runners[0].tokenize(cfg["text"]), wl.prompt_tokens,
                                wl.n_requests + wl.concurrency * wl.warmup)
        samples, wall = _measure(runners, prompts, wl, on_progress)
        pss = current_pss_bytes()  # runners still loaded, every buffer allocated
    finally:
        for r in runners:
            r.close()
    return {"samples": samples, "wall_seconds": wall, "peak_rss": peak_rss_bytes(),
            "baseline_rss": baseline, "loaded_pss": pss, "threads_per_stream": per_stream,
            "threads": threads}


def _measure(runners: list[Runner], prompts: list[list[int]], wl: BenchWorkload,
             on_progress: Callable[[int, int], None]) -> tuple[list[dict[str, float]], float]:
    samples: list[dict[str, float]] = [{} for _ in range(wl.n_requests)]
    errors: list[BaseException] = []
    lock = threading.Lock()
    state = {"next": 0, "done": 0}
    starts: list[float] = []
    barrier = threading.Barrier(len(runners), action=lambda: starts.append(time.perf_counter()))

    def stream(i: int, runner: Runner) -> None:
        try:
            for k in range(wl.warmup):  # warm-up prompts lie after the measured ones
                runner.generate(prompts[wl.n_requests + i * wl.warmup + k], wl.new_tokens)
            barrier.wait()
            while True:
                with lock:
                    j = state["next"]
                    if j >= wl.n_requests:
                        return
                    state["next"] = j + 1
                t0 = time.perf_counter()
                _, arrivals = runner.generate(prompts[j], wl.new_tokens)
                samples[j] = request_samples(arrivals, time.perf_counter() - t0)
                with lock:
                    state["done"] += 1
                    on_progress(state["done"], wl.n_requests)
        except threading.BrokenBarrierError:
            return  # another stream failed; its error is reported
        except BaseException as e:  # re-raised in the main thread below
            errors.append(e)
            barrier.abort()

    workers = [threading.Thread(target=stream, args=(i, r), daemon=True)
               for i, r in enumerate(runners)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    if errors:
        raise errors[0]
    return samples, time.perf_counter() - starts[0]


def _emit_progress(done: int, total: int) -> None:
    sys.stdout.write(f"{PROGRESS_PREFIX} {done} {total}\n")
    sys.stdout.flush()


def main() -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    cfg = json.loads(sys.stdin.read())
    out = Path(cfg["result_path"])
    try:
        result = run(cfg, _emit_progress)
    except AdvisorError as e:
        out.write_text(json.dumps({"error": e.problem, "fix": e.fix,
                                   "kind": type(e).__name__}))
        return e.exit_code
    out.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
