"""`advisor worker`: evaluate candidates of a study stored in a shared database, from any host.

The study holds its search job (advisor.search.job); the worker rebuilds the objective from it
(plan space, sensitivity table from the disk cache, measured evaluation when the job asks for
it) and runs trials until the study holds its n_trials finished ones. A worker killed mid-trial
stops heartbeating: after the job's grace period the next trial started by any process marks
its trial FAIL and queues a retry with the same knobs.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import optuna

from advisor.progress import Stages

log = logging.getLogger(__name__)


def run_worker(study_name: str, storage: str, *, model: str | None = None,
               trials: int | None = None, threads: int = 0, scratch: Path | None = None,
               target: str | None = None, stages: Stages) -> dict[str, Any]:
    """Run trials of `study_name` in `storage`; return a summary of the study afterwards."""
    from advisor.errors import BadInput
    from advisor.inspect import inspect_model
    from advisor.probe import get_hardware
    from advisor.search.job import load_job, resolve_job_model
    from advisor.search.study import SearchConfig, run_search
    from advisor.sensitivity import gguf_sensitivity
    from advisor.space import gguf_plan_space

    if trials is not None and trials < 1:
        raise BadInput(f"--trials {trials} must be >= 1", "pass a positive integer or leave it out")
    job, rdb = load_job(storage, study_name)  # bad input fails before any progress output
    spec = inspect_model(resolve_job_model(job, model))
    # recommend runs a study in the whole space and one in the floored subspace, both on the
    # table of the whole space (advisor.recommend.plans.gguf_search): the job's digest says which
    free = gguf_plan_space(spec, imatrix=job.imatrix, floor_roles=())
    spaces = {s.digest(): s for s in (free, gguf_plan_space(spec, imatrix=job.imatrix))}
    space = spaces.get(job.space_digest, free) if job.space_digest else free
    if job.space_digest and space.digest() != job.space_digest:
        raise BadInput(f"this host's plan spaces ({', '.join(spaces)}) differ from the study's "
                       f"({job.space_digest})", "use the same quant-advisor version on every host")
    table = gguf_sensitivity(spec, free, imatrix=job.imatrix, threads=threads, stages=stages,
                             anchors=job.sensitivity_anchors)
    table = replace(table, space=space)
    evaluate = None
    if job.measure is not None:
        from advisor.recommend.measured import MeasuredEvaluator
        from advisor.targets import Targets

        wl = Targets.from_dict(job.targets).workload
        hw = get_hardware(target, scratch)
        evaluate = MeasuredEvaluator(spec, space, hw, job.measure, imatrix=job.imatrix,
                                     workload=wl, threads=threads, scratch=scratch)
    # every worker samples from its own seed: identical seeds would draw identical knobs
    config = SearchConfig(n_trials=job.n_trials, seed=job.seed + 1 + os.getpid() % 100_003,
                          study_name=study_name, warm_start=False)
    with stages.step(f"running trials of {study_name} (until {job.n_trials} are finished)"):
        result = run_search(table, job.budget_bytes, rdb, config=config, evaluate=evaluate,
                            objectives=job.objectives, limits=job.limits, max_new_trials=trials)
    states = [t.state.name for t in optuna.load_study(study_name=study_name,
                                                      storage=rdb).get_trials(deepcopy=False)]
    return {"study": study_name, "n_trials": job.n_trials,
            "finished": states.count("COMPLETE"), "failed": states.count("FAIL"),
            "running": states.count("RUNNING"), "waiting": states.count("WAITING"),
            "evaluations": result.evaluations,
            "best_trial": result.best.number if result.best else None}
