"""The Optuna study over plans: knobs sampled by Optuna, the per-tensor allocation solved exactly.

A trial does not pick 211 types one by one. It picks a few knobs: a size step (the share of the
byte budget the plan may use) and, per tensor role, a weight on that role's surrogate cost; the
cheapest plan of the reweighted surrogate within that size then comes from the exact knapsack DP
(exact.py). Every trial is a plan within the budget and Pareto-optimal for its weights; trial 0
(warm start: full size, all weights 1) is the exact surrogate optimum; the other trials explore
what the surrogate cannot see: the caller's `evaluate(assignment) -> dict` (measured latency,
peak memory, real KL) enters the objectives and the limits.

Why this and TPE, measured on the embedded SmolLM2-135M's table (default SensitivityConfig,
211 free tensors) with the surrogate as the only objective and no warm start; best feasible
surrogate after n trials as a multiple of the exact DP optimum, median over seeds:

  budget = Q3_K_M's 91,724,544 bytes (optimum 0.0939 nats), seeds 0-4
                                           n=10    n=25    n=50    n=100   n=300
  knobs + exact DP, TPE (multivariate)     1.149   1.047   1.027   1.018
  knobs + exact DP, NSGA-II (pop. 16)      1.149   1.064   1.057   1.036
  knobs + exact DP, random                 1.149   1.072   1.072   1.072
  211 categoricals, TPE                    no feasible plan in 300 trials (seed 0)
  211 categoricals, NSGA-II (pop. 50)      no feasible plan in 300 trials (seed 0)

  budget = Q4_K_M's 103,668,480 bytes (optimum 0.0224 nats), seeds 0-2 (raw: seed 0)
  knobs + exact DP, TPE                    1.262   1.067   1.039   1.037
  knobs + exact DP, NSGA-II                1.262   1.156   1.102   1.055
  knobs + exact DP, random                 1.262   1.156   1.156   1.095
  211 categoricals, TPE                    none    8.10    8.10    8.10    5.54
  211 categoricals, NSGA-II                none    none    none    15.0    8.37

A per-tensor search does not reach a feasible plan near a tight budget in hundreds of trials
(each trial of the real loop quantizes and measures a model); on the knobs TPE converges fastest
(NSGA-II needs generations, random never narrows). Time per trial: ~0.06 s in memory, ~0.4 s
with SQLite (one commit per parameter), negligible beside a measured trial.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from advisor.errors import BadInput, Infeasible, printable, redact_url
from advisor.figures import BYTES, Figure, Origin
from advisor.plan import QuantPlan
from advisor.search.exact import Allocation, Allocator
from advisor.sensitivity.table import NATS, SensitivityTable

log = logging.getLogger(__name__)

Evaluate = Callable[[dict[str, str]], Mapping[str, float]]
SAMPLERS = ("tpe", "nsga2", "random")
# optuna >= 5 records constraints on the trial (Trial.set_constraint) and deprecates the
# samplers' constraints_func; optuna 4 has only the latter.
_TRIAL_CONSTRAINTS = hasattr(optuna.trial.Trial, "set_constraint")
_SIZE = "size_step"
_WEIGHT = "log2_weight_x2."  # + role


@dataclass(frozen=True)
class SearchConfig:
    """How the study samples: trials in all (a resumed study counts its finished ones), seed,
    sampler (tpe, nsga2, random), resolution of the size knob, and the warm start (trial 0 =
    the exact surrogate optimum within the budget)."""

    n_trials: int = 50
    seed: int = 0
    sampler: str = "tpe"
    size_steps: int = 32
    warm_start: bool = True
    study_name: str = "quant-advisor"

    def __post_init__(self) -> None:
        if not isinstance(self.n_trials, int) or self.n_trials < 1:
            raise ValueError(f"SearchConfig.n_trials={self.n_trials!r}; expected an int >= 1")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"SearchConfig.sampler={self.sampler!r}; expected one of "
                             f"{', '.join(SAMPLERS)}")
        if not isinstance(self.size_steps, int) or self.size_steps < 1:
            raise ValueError(f"SearchConfig.size_steps={self.size_steps!r}; expected >= 1")


@dataclass(frozen=True)
class TrialRecord:
    """One finished trial: its knobs, plan, size, surrogate KL and the caller's metrics."""

    number: int
    params: dict[str, Any]
    assignment: dict[str, str]
    nbytes: int
    surrogate: float
    metrics: dict[str, float]
    feasible: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number, "params": self.params, "feasible": self.feasible,
            "bytes": Figure(self.nbytes, BYTES, Origin.PREDICTED).to_dict(),
            "surrogate_kl": Figure(self.surrogate, NATS, Origin.PREDICTED).to_dict(),
            "metrics": self.metrics, "tensor_formats": self.assignment,
        }


@dataclass(frozen=True)
class SearchResult:
    """All finished trials; `best`: the feasible trial of lowest first objective (ties: fewer
    bytes); `pareto`: the feasible non-dominated trials over all objectives."""

    trials: list[TrialRecord]
    best: TrialRecord | None
    pareto: list[TrialRecord]
    objectives: tuple[str, ...]
    storage: str
    study_name: str
    evaluations: int = 0
    """evaluate() calls made by this run (a plan already scored is never scored again)."""
    imatrix: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def best_plan(self) -> QuantPlan:
        """The best trial's plan for the gguf backend (label search#<trial number>)."""
        if self.best is None:
            raise Infeasible("no trial met the limits", "relax the budget or the limits")
        options = {"imatrix": True} if self.imatrix else {}
        return QuantPlan("gguf", dict(self.best.assignment), options=options,
                         label=f"search#{self.best.number}")

    def to_dict(self) -> dict[str, Any]:
        return {"storage": self.storage, "study_name": self.study_name, "imatrix": self.imatrix,
                "objectives": list(self.objectives), "evaluations": self.evaluations,
                "best": self.best.to_dict() if self.best else None,
                "pareto": [t.number for t in self.pareto],
                "trials": [t.to_dict() for t in self.trials], "extra": self.extra}


HEARTBEAT_S = 60
"""Seconds between a running trial's heartbeats; after GRACE_S without one, the next trial
started on the study (any process, any host) marks it FAIL and queues a retry of its knobs."""
GRACE_S = 180
MAX_RETRY = 2


def open_storage(url: str, heartbeat_s: int = HEARTBEAT_S,
                 grace_s: int = GRACE_S) -> optuna.storages.RDBStorage:
    """An RDB storage (SQLite, PostgreSQL, ...) with heartbeats: a trial of a killed process is
    marked FAIL after `grace_s` and retried (up to MAX_RETRY times) by whoever runs next. Every
    process of one study must use the same heartbeat settings (advisor.search.job stores them)."""
    retry_cls = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.simplefilter("ignore", FutureWarning)
        if retry_cls is not None:  # optuna >= 4.9
            return optuna.storages.RDBStorage(
                url, heartbeat_interval=heartbeat_s, grace_period=grace_s,
                heartbeat_stale_trial_callback=retry_cls(max_retry=MAX_RETRY))
        return optuna.storages.RDBStorage(
            url, heartbeat_interval=heartbeat_s, grace_period=grace_s,
            failed_trial_callback=optuna.storages.RetryFailedTrialCallback(max_retry=MAX_RETRY))


SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
"""A study storage given as a path is a SQLite file: an existing file, or a new one whose name
ends in one of these (the default is `<out>.study.db`). Any other word is refused: a typo of a
URL would otherwise become a stray database file in the working directory."""
_STORAGE_FIX = ("pass --storage a database URL such as sqlite:///studies.db or "
                "postgresql://USER@HOST:PORT/DB, or a SQLite file path ending in .db")


def storage_url(storage: str | Path, create: bool = True) -> str:
    """A URL as is; a file path becomes sqlite:///<absolute path> (its directory made unless not
    `create`). A PostgreSQL URL without a driver gets psycopg2 (the project's dependency;
    SQLAlchemy >= 2.1 would pick psycopg 3). BadInput, before anything is created, for a URL
    whose scheme no SQLAlchemy dialect reads and for a path that is not a SQLite file
    (SQLITE_SUFFIXES or an existing file)."""
    text = str(storage)
    for bare in ("postgresql://", "postgres://"):
        if text.startswith(bare):
            text = "postgresql+psycopg2://" + text[len(bare):]
    if "://" in text:
        _check_url(text)
        return text
    path = Path(text).expanduser()
    if not text.strip() or not (path.is_file() or path.suffix.lower() in SQLITE_SUFFIXES):
        shown = redact_url("x://" + text)[4:]  # a URL without its scheme: user:***@host
        raise BadInput(f"the study storage {printable(shown)!r} is neither a database URL nor a "
                       "SQLite file path", _STORAGE_FIX)
    path = path.resolve()
    if create:
        path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def check_storage(storage: str | Path) -> None:
    """BadInput when `storage` (the `--storage` of recommend and worker) cannot name a study
    storage (storage_url); creates nothing. Called before any work is done."""
    storage_url(storage, create=False)


def _check_url(url: str) -> None:
    """BadInput unless SQLAlchemy parses `url` and has a dialect for its scheme (the driver
    itself is imported only when the storage is opened)."""
    from sqlalchemy.engine import make_url

    try:
        make_url(url).get_dialect()
    except Exception as e:  # noqa: BLE001 - ArgumentError, NoSuchModuleError, ...: one line
        scheme = url.split("://", 1)[0]
        raise BadInput(f"the study storage {redact_url(url)} is not a database URL SQLAlchemy "
                       f"reads (scheme {scheme!r}: {type(e).__name__})", _STORAGE_FIX) from None


class PlanKnobs:
    """The low-dimensional parametrisation: a size step and a per-role weight on the surrogate,
    mapped to the exact allocation of the reweighted surrogate (DP tables cached per weights).

    Weights are powers of two in half steps (2^(k/2), k in [-WEIGHT_STEPS, WEIGHT_STEPS]); all
    zero is the surrogate as measured. Every knob setting yields a plan within the budget, the
    cheapest for its reweighted surrogate, so no trial is wasted on an infeasible plan.
    """

    WEIGHT_STEPS = 4

    def __init__(self, table: SensitivityTable, budget: int, size_steps: int) -> None:
        self.table, self.budget, self.size_steps = table, budget, size_steps
        self.items = table.items()
        self.role_of = {t.name: t.role.value for t in table.space.tensors}
        self.roles = sorted({t.role.value for t in table.space.free})
        self._allocators: dict[tuple[int, ...], Allocator] = {}

    def allocator(self, weights: tuple[int, ...]) -> Allocator:
        if weights not in self._allocators:
            if len(self._allocators) >= 64:
                self._allocators.pop(next(iter(self._allocators)))
            factor = {r: 2.0 ** (k / 2) for r, k in zip(self.roles, weights)}
            items = [(name, [(g, b, c * factor.get(self.role_of[name], 1.0))
                             for g, b, c in opts]) for name, opts in self.items]
            self._allocators[weights] = Allocator(items, self.budget)
        return self._allocators[weights]

    def plan(self, size_step: int, weights: tuple[int, ...]) -> Allocation:
        """The plan the knobs select, with its cost on the unweighted surrogate."""
        alloc = self.allocator(weights)
        cap = alloc.min_bytes + (self.budget - alloc.min_bytes) * size_step // self.size_steps
        best = alloc.best(cap)
        cost = sum(self.table.cost(n, g) for n, g in best.assignment.items())
        return Allocation(best.assignment, best.nbytes, cost)

    def suggest(self, trial: optuna.Trial) -> Allocation:
        size = trial.suggest_int(_SIZE, 0, self.size_steps)
        weights = tuple(trial.suggest_int(_WEIGHT + r, -self.WEIGHT_STEPS, self.WEIGHT_STEPS)
                        for r in self.roles)
        return self.plan(size, weights)

    def warm_start_params(self) -> dict[str, Any]:
        return {_SIZE: self.size_steps, **{_WEIGHT + r: 0 for r in self.roles}}


def _sampler(config: SearchConfig, seed: int,
             constraints: Callable[[optuna.trial.FrozenTrial], Sequence[float]] | None
             ) -> optuna.samplers.BaseSampler:
    constraints = None if _TRIAL_CONSTRAINTS else constraints
    if config.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True,
                                          constraints_func=constraints)
    if config.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=16,
                                             constraints_func=constraints)
    return optuna.samplers.RandomSampler(seed=seed)


_ATTR = "plan"  # one user attribute per trial: every RDB write is a commit (~10 ms on SQLite)


def _constraints(trial: optuna.trial.FrozenTrial) -> Sequence[float]:
    return tuple(trial.user_attrs.get(_ATTR, {}).get("constraints", (1.0,)))


def _record(t: optuna.trial.FrozenTrial) -> TrialRecord:
    a = t.user_attrs[_ATTR]
    return TrialRecord(t.number, dict(t.params), dict(a["assignment"]), int(a["bytes"]),
                       float(a["surrogate_kl"]), dict(a["metrics"]),
                       all(c <= 0 for c in a["constraints"]))


def _interrupted(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    from advisor.progress import interrupt

    interrupt.check()


def run_search(
    table: SensitivityTable,
    budget_bytes: int,
    storage: str | Path | optuna.storages.BaseStorage,
    *,
    config: SearchConfig = SearchConfig(),
    evaluate: Evaluate | None = None,
    objectives: Sequence[str] = ("surrogate_kl",),
    limits: Mapping[str, float] | None = None,
    max_new_trials: int | None = None,
    callbacks: Sequence[Callable[[optuna.Study, optuna.trial.FrozenTrial], None]] = (),
) -> SearchResult:
    """Run (or resume) the study in `storage` (a URL, a file path for SQLite, or an Optuna
    storage object) until it holds `config.n_trials` finished trials.

    Each trial's metrics are {"surrogate_kl", "bytes"} plus what `evaluate(assignment)` returns
    (assignment: every tensor's GGML type); `objectives` name the metrics to minimise, `limits`
    maxima on metrics (bytes <= budget_bytes always). A plan already scored in this study is
    not evaluated again; its metrics are reused. `max_new_trials` caps the trials this call
    runs (an `advisor worker --trials N`). `callbacks` also go to `study.optimize`: each is
    called with every trial as it finishes (progress display).
    """
    if budget_bytes < table.space.min_size():
        raise Infeasible(f"a budget of {budget_bytes} bytes is below the smallest plan of the "
                         f"space ({table.space.min_size()} bytes)", "raise the size budget")
    objectives = tuple(objectives)
    if not objectives:
        raise BadInput("no objective given", "e.g. objectives=('surrogate_kl',)")
    limits = {"bytes": float(budget_bytes), **(limits or {})}
    knobs = PlanKnobs(table, budget_bytes, config.size_steps)
    rdb: optuna.storages.BaseStorage
    if isinstance(storage, optuna.storages.BaseStorage):
        url, rdb = type(storage).__name__, storage
    else:
        url = storage_url(storage)
        # heartbeats let a later run fail the trials of a killed one (after the grace period)
        rdb = open_storage(url)
    probe = optuna.create_study(storage=rdb, study_name=config.study_name,
                                directions=["minimize"] * len(objectives), load_if_exists=True)
    done = [t for t in probe.get_trials(deepcopy=False)
            if t.state == optuna.trial.TrialState.COMPLETE]
    # a fresh sampler on resume would replay the first draws: seed it past the trials it has
    sampler = _sampler(config, config.seed + len(probe.trials), _constraints)
    study = optuna.load_study(study_name=config.study_name, storage=rdb, sampler=sampler)
    if config.warm_start and not probe.trials:
        study.enqueue_trial(knobs.warm_start_params())
    scored: dict[str, dict[str, Any]] = {t.user_attrs[_ATTR]["plan_digest"]: t.user_attrs[_ATTR]
                                         for t in done if _ATTR in t.user_attrs}
    calls = [0]

    def objective(trial: optuna.Trial) -> Sequence[float]:
        alloc = knobs.suggest(trial)
        digest = table.space.plan(alloc.assignment).digest()
        if digest in scored:
            attrs = scored[digest]
        else:
            metrics = {"surrogate_kl": alloc.cost, "bytes": float(alloc.nbytes)}
            if evaluate is not None:
                calls[0] += 1
                metrics.update({k: float(v) for k, v in evaluate(dict(alloc.assignment)).items()})
            missing = [o for o in (*objectives, *limits) if o not in metrics]
            if missing:
                raise BadInput(f"objectives or limits {missing} are not among the metrics "
                               f"{sorted(metrics)}", "return them from evaluate()")
            attrs = {"plan_digest": digest, "assignment": alloc.assignment,
                     "bytes": alloc.nbytes, "surrogate_kl": alloc.cost, "metrics": metrics,
                     "constraints": [metrics[k] - v for k, v in sorted(limits.items())]}
            scored[digest] = attrs
        trial.set_user_attr(_ATTR, attrs)
        if _TRIAL_CONSTRAINTS:
            for k, v in zip(sorted(limits), attrs["constraints"]):
                trial.set_constraint(k, v)
        return tuple(attrs["metrics"][o] for o in objectives)

    remaining = config.n_trials - len(done)
    if max_new_trials is not None:
        remaining = min(remaining, max_new_trials)
    if remaining > 0:
        log.info("study %s: %d finished trials, running %d more", config.study_name, len(done),
                 remaining)
        # other processes (`advisor worker`) may finish trials of the same study meanwhile:
        # stop once the study as a whole holds n_trials finished ones
        done_cb = optuna.study.MaxTrialsCallback(config.n_trials,
                                                 states=(optuna.trial.TrialState.COMPLETE,))
        # a Ctrl-C swallowed inside a trial (advisor.progress.interrupt) stops the study after
        # that trial, not at the end of the stage (it outlived a 60 s wait in a loaded suite)
        study.optimize(objective, n_trials=remaining,
                       callbacks=[done_cb, _interrupted, *callbacks])
    return _result(study, objectives, redact_url(url), config.study_name, calls[0],
                   table.space.imatrix)


def _result(study: optuna.Study, objectives: tuple[str, ...], url: str, name: str,
            calls: int, imatrix: bool) -> SearchResult:
    trials = [_record(t) for t in study.get_trials(deepcopy=False)
              if t.state == optuna.trial.TrialState.COMPLETE and _ATTR in t.user_attrs]
    feasible = [t for t in trials if t.feasible]

    def key(t: TrialRecord) -> tuple[float, ...]:
        return tuple(t.metrics[o] for o in objectives)

    best = min(feasible, key=lambda t: (*key(t)[:1], t.nbytes, t.number), default=None)
    pareto = [t for t in feasible
              if not any(all(a <= b for a, b in zip(key(o), key(t))) and key(o) != key(t)
                         for o in feasible)]
    return SearchResult(trials, best, pareto, objectives, url, name, calls, imatrix)
