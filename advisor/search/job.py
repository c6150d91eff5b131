"""A search job: everything a process needs to rebuild a study's objective, stored in the study.

`advisor recommend` (or `create_job_study`) writes a `SearchJob` into the Optuna study's user
attributes; `advisor worker --study NAME --storage URL` on any host reads it back, rebuilds the
plan space and the sensitivity table (cached on disk by content key, so each host computes it
once), and runs trials of the same study. The model is named as the user gave it (an alias, or a
path that must hold the same file on every host: its content identity is checked).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import optuna

from advisor.errors import BadInput, redact
from advisor.search.study import GRACE_S, HEARTBEAT_S, open_storage, redact_url, storage_url
from advisor.space.choices import PlanSpace

JOB_ATTR = "search_job"
JOB_VERSION = 1
SURROGATE_METRICS = ("surrogate_kl", "bytes")
MEASURED_METRICS = ("kl", "p99_kl", "top1", "size", "p95_s", "peak_rss")
"""advisor.recommend.measured's metrics (p95_s and peak_rss only with bench_requests > 0)."""


@dataclass(frozen=True)
class MeasureSettings:
    """How a trial is measured for real (advisor.recommend.measured): evaluation windows of
    `window` tokens (KL vs the F16 reference), and bench requests (0: no bench)."""

    eval_windows: int = 1
    window: int = 512
    bench_requests: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.eval_windows, int) or self.eval_windows < 1:
            raise ValueError(f"MeasureSettings.eval_windows={self.eval_windows!r}; expected >= 1")
        if not isinstance(self.window, int) or self.window < 16:
            raise ValueError(f"MeasureSettings.window={self.window!r}; expected >= 16")
        if not isinstance(self.bench_requests, int) or self.bench_requests < 0:
            raise ValueError(f"MeasureSettings.bench_requests={self.bench_requests!r}; "
                             "expected >= 0")


@dataclass(frozen=True)
class SearchJob:
    """The objective of one study: model (+ identity), plan space, budget, trials, seed,
    objectives and limits, measurement settings (None: surrogate only), heartbeat settings."""

    model: str
    model_identity: str
    imatrix: bool
    budget_bytes: int
    n_trials: int
    seed: int = 0
    objectives: tuple[str, ...] = ("surrogate_kl",)
    limits: dict[str, float] = field(default_factory=dict)
    targets: dict[str, Any] = field(default_factory=dict)
    measure: MeasureSettings | None = None
    space_digest: str = ""
    sensitivity_anchors: int = 0  # SensitivityConfig.anchors of the table every worker builds
    heartbeat_s: int = HEARTBEAT_S
    grace_s: int = GRACE_S
    version: int = JOB_VERSION

    def __post_init__(self) -> None:
        for name in ("budget_bytes", "n_trials", "heartbeat_s", "grace_s"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"SearchJob.{name}={v!r}; expected an integer >= 1")
        if self.grace_s <= self.heartbeat_s:
            raise ValueError(f"SearchJob.grace_s={self.grace_s} must exceed heartbeat_s="
                             f"{self.heartbeat_s}")
        if not self.objectives:
            raise ValueError("SearchJob.objectives is empty; expected e.g. ('surrogate_kl',)")
        known = SURROGATE_METRICS + (MEASURED_METRICS if self.measure else ())
        unknown = sorted((set(self.objectives) | set(self.limits)) - set(known))
        if unknown:
            raise ValueError(f"SearchJob objectives/limits {unknown} are not metrics of this job; "
                             f"expected some of {', '.join(known)}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["objectives"] = list(self.objectives)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SearchJob:
        if d.get("version") != JOB_VERSION:
            raise ValueError(f"search job version {d.get('version')!r}; expected {JOB_VERSION}")
        m = d.get("measure")
        return cls(model=str(d["model"]), model_identity=str(d["model_identity"]),
                   imatrix=bool(d["imatrix"]), budget_bytes=int(d["budget_bytes"]),
                   n_trials=int(d["n_trials"]), seed=int(d.get("seed", 0)),
                   objectives=tuple(d.get("objectives") or ("surrogate_kl",)),
                   limits={str(k): float(v) for k, v in (d.get("limits") or {}).items()},
                   targets=dict(d.get("targets") or {}),
                   measure=MeasureSettings(**m) if m else None,
                   space_digest=str(d.get("space_digest", "")),
                   sensitivity_anchors=int(d.get("sensitivity_anchors", 0)),
                   heartbeat_s=int(d.get("heartbeat_s", HEARTBEAT_S)),
                   grace_s=int(d.get("grace_s", GRACE_S)))

    def study_name(self) -> str:
        """A stable name from the job's content (the same job resumes the same study)."""
        body = {k: v for k, v in self.to_dict().items() if k not in ("heartbeat_s", "grace_s")}
        return "job-" + hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def save_job(study: optuna.Study, job: SearchJob) -> None:
    """Store `job` in the study. A rerun may change the trial count and seed (the study goes on
    with more trials) and name the same model file differently (its identity is what counts);
    a job with another objective under the same name is refused."""
    stored = study.user_attrs.get(JOB_ATTR)
    mutable = ("n_trials", "seed", "model")
    if stored is not None:
        same = {k: v for k, v in stored.items() if k not in mutable}
        if same != {k: v for k, v in job.to_dict().items() if k not in mutable}:
            raise BadInput(f"study {study.study_name} already holds a different search job",
                           "use a new study name or storage")
    if stored != job.to_dict():
        study.set_user_attr(JOB_ATTR, job.to_dict())


def recommend_job(model: str, spec: Any, targets: dict[str, Any], space: PlanSpace,
                  budget_bytes: int, n_trials: int, seed: int, imatrix: bool,
                  sensitivity_anchors: int = 0) -> SearchJob:
    """The surrogate-only job `advisor recommend` runs (an alias stays an alias, so workers on
    other hosts resolve their own copy; a path is made absolute)."""
    from advisor.artifact.cache import file_identity
    from advisor.inspect import ALIASES

    name = model if model.strip().lower() in ALIASES else str(Path(spec.path).absolute())
    return SearchJob(model=name, model_identity=file_identity(spec.path), imatrix=imatrix,
                     budget_bytes=budget_bytes, n_trials=n_trials, seed=seed, targets=targets,
                     space_digest=space.digest(), sensitivity_anchors=sensitivity_anchors)


def _open(url: str, heartbeat_s: int = HEARTBEAT_S,
          grace_s: int = GRACE_S) -> optuna.storages.RDBStorage:
    try:
        return open_storage(url, heartbeat_s, grace_s)
    except Exception as e:  # noqa: BLE001 - SQLAlchemy/driver errors: name them in one line
        # the driver's message may quote the URL or its password: redacted before it is shown
        text = redact(e, url).strip()
        msg = text.splitlines()[0] if text else type(e).__name__
        raise BadInput(f"cannot open the study storage {redact_url(url)} ({msg})",
                       "check the --storage URL, that the database runs and is reachable") \
            from None


def create_job_study(job: SearchJob, storage: str, study_name: str | None = None,
                     warm_start_params: dict[str, Any] | None = None) -> str:
    """Create (or reopen) the study for `job` in `storage`, store the job, queue the warm start
    (trial 0) when the study is new; return the study name. Workers may then join it."""
    name = study_name or job.study_name()
    rdb = _open(storage_url(storage), job.heartbeat_s, job.grace_s)
    study = optuna.create_study(storage=rdb, study_name=name, load_if_exists=True,
                                directions=["minimize"] * len(job.objectives))
    save_job(study, job)
    if warm_start_params is not None and not study.trials:
        study.enqueue_trial(warm_start_params)
    return name


def load_job(storage: str, study_name: str) -> tuple[SearchJob, optuna.storages.RDBStorage]:
    """The job stored in `study_name` and a storage with the job's heartbeat settings;
    BadInput when the storage cannot be opened, the study is missing or holds no job."""
    url = storage_url(storage)
    rdb = _open(url)
    names = [s.study_name for s in optuna.get_all_study_summaries(rdb)]
    if study_name not in names:
        listed = ", ".join(names[:5]) or "none"
        raise BadInput(f"no study {study_name!r} in {redact_url(url)} (studies: {listed})",
                       "pass the study name `advisor recommend` printed")
    study = optuna.load_study(study_name=study_name, storage=rdb)
    raw = study.user_attrs.get(JOB_ATTR)
    if raw is None:
        raise BadInput(f"study {study_name!r} holds no search job",
                       "start it with `advisor recommend --storage URL` first")
    try:
        job = SearchJob.from_dict(raw)
    except (KeyError, TypeError, ValueError) as e:
        raise BadInput(f"study {study_name!r} holds an unreadable search job ({e})",
                       "use the same quant-advisor version on every host") from None
    return job, open_storage(url, job.heartbeat_s, job.grace_s)


def resolve_job_model(job: SearchJob, model: str | None = None) -> Path:
    """This host's copy of the job's model (or `model`), checked by content identity."""
    from advisor.artifact.cache import file_identity
    from advisor.inspect import inspect_model

    spec = inspect_model(model or job.model)
    ident = file_identity(spec.path)
    if ident != job.model_identity:
        raise BadInput(f"the model at {spec.path} is not the study's model (identity {ident} "
                       f"vs {job.model_identity})",
                       "copy the same model file to this host and pass it with --model")
    return Path(spec.path)
