"""A measured `evaluate(assignment) -> metrics` for the study: realize the trial's plan with the
GGUF backend into a scratch directory and measure it for real.

    ev = MeasuredEvaluator(spec, space, hw, MeasureSettings(eval_windows=2))
    run_search(table, budget, storage, evaluate=ev, objectives=("kl",), limits={"size": ...})

Each call quantizes the plan with llama.cpp (the same path as `advisor quantize`), scores it
against the F16 reference on `eval_windows` windows of `window` tokens of the evaluation text
(reference log-probs cached once per model/text/window), optionally runs a short bench of the
workload in a child process, and deletes the scratch artifact. The returned metrics (all
measured on this host):

  kl       mean KL divergence vs the F16 reference (nats)
  p99_kl   99th percentile KL (nats)
  top1     top-1 agreement with the reference (fraction)
  size     bytes of the written GGUF file
  p95_s, peak_rss   only when bench_requests > 0: p95 request latency (s), peak resident bytes
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

from advisor.estimate import Workload
from advisor.hardware import HardwareProfile
from advisor.modelspec import ModelSpec
from advisor.progress import Stages
from advisor.search.job import MeasureSettings
from advisor.space.choices import PlanSpace

log = logging.getLogger(__name__)


class MeasuredEvaluator:
    """Callable `evaluate(assignment) -> dict[str, float]` that measures each plan for real."""

    def __init__(self, spec: ModelSpec, space: PlanSpace, hw: HardwareProfile,
                 settings: MeasureSettings = MeasureSettings(), *, imatrix: bool = False,
                 workload: Workload = Workload(), threads: int = 0,
                 scratch: Path | None = None, eval_text: str | None = None,
                 calib_text: str | None = None) -> None:
        from advisor.textdata import default_calibration_text, default_evaluation_text

        self.spec, self.space, self.hw, self.settings = spec, space, hw, settings
        self.imatrix, self.workload, self.threads = imatrix, workload, threads
        self.scratch = Path(scratch) if scratch is not None else None
        self.eval_text = eval_text if eval_text is not None else default_evaluation_text()
        self.calib_text = calib_text if calib_text is not None else default_calibration_text()
        self.calls = 0

    def __call__(self, assignment: dict[str, str]) -> dict[str, float]:
        from advisor.artifact.preflight import check_disk
        from advisor.measure.stage import bench, evaluate
        from advisor.realize import quantize_artifact
        from backends.base import QuantizeOptions

        self.calls += 1
        plan = self.space.plan(assignment, label=f"trial-{self.calls}")
        if self.scratch is not None:
            self.scratch.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="measured-", dir=self.scratch))
        try:
            check_disk(work, self.space.size(assignment) + self.spec.metadata_bytes,
                       "a search trial's candidate")
            directory = work / "candidate"
            options = QuantizeOptions(calib_text=self.calib_text, imatrix=self.imatrix,
                                      threads=self.threads)
            quiet = Stages(enabled=False)
            report = quantize_artifact(self.spec, plan, self.hw, directory, options,
                                       self.workload, quiet, self.calib_text)
            s = self.settings
            q = evaluate(self.spec, directory, self.eval_text, s.eval_windows, s.window, quiet,
                         self.threads)
            metrics = {"kl": q.mean_kl.value, "p99_kl": q.p99_kl.value,
                       "top1": q.top1_agreement.value, "size": float(report["size"]["value"])}
            if s.bench_requests:
                wl = self.workload
                b = bench(directory, wl.prompt_tokens, wl.new_tokens, wl.concurrency,
                          s.bench_requests, 1, self.eval_text, quiet, self.threads)
                metrics.update({"p95_s": b.latency_p95.value, "peak_rss": b.peak_rss.value})
            log.info("measured trial plan: %s", metrics)
            return {k: float(v) for k, v in metrics.items()}
        finally:
            shutil.rmtree(work, ignore_errors=True)
