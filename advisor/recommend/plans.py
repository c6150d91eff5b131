"""The search stage of a recommendation: the Optuna studies whose best distinct plans become
candidates. The GGUF study runs on the sensitivity table (and, with `--measured-trials`, a
second study whose every trial is quantized and measured); the HF study on the int-mix table.
Studies live in the storage beside the artifact (or `--storage`), so a rerun resumes them and
`advisor worker --study NAME` on other hosts can join in.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from advisor.errors import BadInput
from advisor.hardware import HardwareProfile
from advisor.modelspec import ModelSpec
from advisor.plan import QuantPlan
from advisor.progress import Stages
from advisor.progress.clock import StageClock
from advisor.recommend.budget import memory_limits
from advisor.recommend.candidates import Candidate
from advisor.recommend.config import EVAL_WINDOW, RecommendConfig
from advisor.search import SearchConfig, SearchResult, TrialRecord, run_search
from advisor.sensitivity import SensitivityTable
from advisor.space import HfPlanSpace, PlanSpace
from advisor.targets import Targets

TrialHook = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class SearchRun:
    """Where the studies are and who asks: what every study of one recommendation shares."""

    model: str
    source_spec: ModelSpec
    targets: Targets
    storage: str
    cfg: RecommendConfig
    stages: Stages
    clock: StageClock
    on_trial: TrialHook | None = None


@dataclass
class Found:
    """The search's candidates and what the report says about it."""

    candidates: list[Candidate] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


def study_storage(cfg: RecommendConfig, out: Path) -> str:
    return cfg.storage or str(out.with_name(out.name + ".study.db"))


def study_name(model_id: str, targets: Targets, space_digest: str, budget: int) -> str:
    body = json.dumps({"model": model_id, "targets": targets.to_dict(), "space": space_digest,
                       "budget": budget}, sort_keys=True)
    return "recommend-" + hashlib.sha256(body.encode()).hexdigest()[:16]


def surrogate_of(table: SensitivityTable | None) -> Callable[[QuantPlan], float | None]:
    """The table's predicted KL of a plan; None when a type is outside the table."""
    def predict(plan: QuantPlan) -> float | None:
        if table is None:
            return None
        try:
            return float(table.surrogate(plan.tensor_formats))
        except (KeyError, ValueError, BadInput):
            return None

    return predict


def best_plans(trials: list[TrialRecord], space: PlanSpace, prefix: str, kind: str, n: int,
               seen: set[str], key: Callable[[TrialRecord], float]) -> list[Candidate]:
    """Up to `n` distinct plans (by digest, `seen` updated) of the feasible trials, best `key`
    first (ties: fewer bytes, earlier trial), labelled `<prefix>-<trial number>`."""
    out: list[Candidate] = []
    for t in sorted((t for t in trials if t.feasible), key=lambda t: (key(t), t.nbytes, t.number)):
        plan = space.plan(t.assignment, label=f"{prefix}-{t.number}")
        if plan.digest() in seen:
            continue
        seen.add(plan.digest())
        out.append(Candidate(plan.label, kind, plan, t.surrogate))
        if len(out) >= n:
            break
    return out


def trial_callback(total: int, bar: Callable[[int, int], None],
                   on_trial: TrialHook | None) -> Callable[[Any, Any], None]:
    """An Optuna callback: advance the progress bar, hand each finished trial to `on_trial`."""
    import optuna

    def callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        done = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
        bar(min(done, total), total)
        attrs = trial.user_attrs.get("plan")
        if on_trial is not None and attrs is not None:
            on_trial({"number": trial.number, "bytes": int(attrs["bytes"]),
                      "surrogate_kl": float(attrs["surrogate_kl"]),
                      "feasible": all(c <= 0 for c in attrs["constraints"]),
                      "done": done, "total": total})

    return callback


def gguf_search(run: SearchRun, spec: ModelSpec, space: PlanSpace, table: SensitivityTable,
                budget: int, hw: HardwareProfile, host: bool,
                floored: PlanSpace | None = None) -> Found:
    """The study on the sensitivity table at `budget` tensor bytes, then the measured phase when
    `cfg.measured_trials`: their best distinct plans.

    `floored`, the subspace that keeps the LM head (and a tied embedding) at the floor type, gets
    a study of its own on the same table and `cfg.candidates // 2` of the candidates (labelled
    `search-floor-<trial>`): the surrogate always prefers the whole space (it is a superset), so
    whether the floor is worth its bytes is left to the measured KL. On the rotated SmolLM2 at
    Q3_K_M's size the floored search's best measured 0.130 nats on held-out text, the whole
    space's 0.067 (Q3_K_M with the same importance matrix: 0.210)."""
    cfg = run.cfg
    n_floor = cfg.candidates // 2 if floored is not None else 0
    seen: set[str] = set()
    found = Found()
    for sub, prefix, n in ((space, "search", cfg.candidates - n_floor),
                           (floored, "search-floor", n_floor)):
        if sub is None or n == 0:
            continue
        result = _study(run, spec, sub, replace(table, space=sub), budget)
        found.candidates += best_plans(result.trials, sub, prefix, "search", n, seen,
                                       key=lambda t: t.surrogate)
        info = {"storage": result.storage, "study_name": result.study_name,
                "trials": len(result.trials),
                "best_trial": result.best.number if result.best else None}
        if sub is space:
            found.info.update(info, imatrix_sha256=table.imatrix_sha256,
                              budget_tensor_bytes=budget, sensitivity={
                                  "anchors": table.config.anchors,
                                  "anchored_layers": table.extra.get("anchored_layers"),
                                  "tensors_measured": sum(1 for v in table.measured.values()
                                                          if v),
                                  "seconds": round(table.seconds, 1)})
        else:
            found.info["floor_study"] = info | {"candidates": n}
    if cfg.measured_trials:
        name = found.info["study_name"]
        minfo, plans = _measured_search(run, name, spec, space, table, budget, hw, host, seen)
        found.info["measured"] = minfo
        found.candidates += plans
    return found


def _study(run: SearchRun, spec: ModelSpec, space: PlanSpace, table: SensitivityTable,
           budget: int) -> SearchResult:
    """One Optuna study of `space` on `table`, registered as a job so that `advisor worker
    --study NAME` on other hosts can join in; its SearchResult."""
    from advisor.artifact.cache import file_identity
    from advisor.search.job import create_job_study, recommend_job

    cfg = run.cfg
    name = study_name(file_identity(spec.path), run.targets, space.digest(), budget)
    create_job_study(recommend_job(run.model, run.source_spec, run.targets.to_dict(), space,
                                   budget, cfg.trials, cfg.seed, cfg.imatrix,
                                   cfg.sensitivity_anchors),
                     run.storage, study_name=name)
    with run.stages.bar(f"searching plans ({cfg.trials} trials, study {name})") as bar:
        return run_search(table, budget, run.storage,
                          config=SearchConfig(n_trials=cfg.trials, seed=cfg.seed,
                                              study_name=name),
                          callbacks=[trial_callback(cfg.trials, bar, run.on_trial)])


def _measured_search(run: SearchRun, name: str, spec: ModelSpec, space: PlanSpace,
                     table: SensitivityTable, budget: int, hw: HardwareProfile, host: bool,
                     seen: set[str]) -> tuple[dict[str, Any], list[Candidate]]:
    """The measured phase: a second study (`<name>-measured`, same storage) whose every trial is
    quantized by llama.cpp and measured (KL on `eval_windows` windows; on this host also p95
    latency and peak memory of a short bench), so TPE learns from measurements and the targets
    the surrogate cannot see (p95, memory) are limits inside the loop. It starts from the exact
    surrogate optimum. Returns its summary and best feasible plans (by measured KL)."""
    from advisor.recommend.measured import MeasuredEvaluator
    from advisor.search.job import MeasureSettings, create_job_study, recommend_job

    cfg, targets = run.cfg, run.targets
    settings = MeasureSettings(eval_windows=cfg.eval_windows, window=EVAL_WINDOW,
                               bench_requests=cfg.bench_requests if host else 0)
    evaluator = MeasuredEvaluator(spec, space, hw, settings, imatrix=cfg.imatrix,
                                  workload=targets.workload, threads=cfg.threads)
    limits: dict[str, float] = {}
    if host and targets.p95_s is not None:
        limits["p95_s"] = targets.p95_s
    mem = [v for _, v in memory_limits(targets)]
    if host and mem:
        limits["peak_rss"] = float(min(mem))
    if targets.max_kld is not None:
        limits["kl"] = targets.max_kld
    mname = name + "-measured"
    # stored in the study, so `advisor worker --study <name>-measured` can join this phase too
    job = replace(recommend_job(run.model, run.source_spec, targets.to_dict(), space, budget,
                                cfg.measured_trials, cfg.seed, cfg.imatrix,
                                cfg.sensitivity_anchors),
                  objectives=("kl",), limits=limits, measure=settings)
    create_job_study(job, run.storage, study_name=mname)
    with run.stages.bar(f"measured search ({cfg.measured_trials} trials quantized and "
                        "measured)") as bar:
        result = run_search(table, budget, run.storage,
                            config=SearchConfig(n_trials=cfg.measured_trials, seed=cfg.seed,
                                                study_name=mname),
                            evaluate=evaluator, objectives=("kl",), limits=limits,
                            callbacks=[trial_callback(cfg.measured_trials, bar, run.on_trial)])
    plans = best_plans(result.trials, space, "measured", "search", cfg.candidates, seen,
                       key=lambda t: t.metrics["kl"])
    info = {"study_name": mname, "trials": len(result.trials), "evaluations": result.evaluations,
            "limits": limits, "best_trial": result.best.number if result.best else None,
            "trial_metrics": [{"number": t.number, "feasible": t.feasible, **t.metrics}
                              for t in result.trials]}
    return info, plans


def hf_search(run: SearchRun, spec: ModelSpec, space: HfPlanSpace,
              budget: int) -> list[Candidate]:
    """The Optuna study over the HF int mix (W4A16/W8A16/F16 per fused group) at `budget`
    tensor bytes, on the RTN sensitivity of each group (advisor.sensitivity.hf_mix): its best
    distinct plans (at most 2: each is a GPTQ/AWQ run and a transformers evaluation)."""
    from advisor.artifact.cache import file_identity
    from advisor.sensitivity.hf_mix import hf_sensitivity_table
    from advisor.textdata import default_calibration_text

    cfg = run.cfg
    with run.clock.stage("hf sensitivity"), \
            run.stages.bar("HF int sensitivity (cached after the first run)") as bar:
        table = hf_sensitivity_table(spec.path, space, default_calibration_text(),
                                     on_progress=bar)
    name = study_name(file_identity(spec.path), run.targets, space.digest(), budget)
    with run.clock.stage("hf search"), \
            run.stages.bar(f"searching HF int mixes ({cfg.trials} trials)") as bar:
        result = run_search(table, budget, run.storage,
                            config=SearchConfig(n_trials=cfg.trials, seed=cfg.seed,
                                                study_name=name),
                            callbacks=[trial_callback(cfg.trials, bar, run.on_trial)])
    return best_plans(result.trials, space, "hf-search", "checkpoint-search",
                      min(cfg.candidates, 2), set(), key=lambda t: t.surrogate)
