"""The search job stored in a study: round trip, validation, reruns, loading errors (SQLite)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import optuna
import pytest

from advisor.errors import BadInput
from advisor.search.job import (
    JOB_ATTR,
    MeasureSettings,
    SearchJob,
    create_job_study,
    load_job,
)
from advisor.search.study import storage_url

JOB = SearchJob(model="smollm2-135m", model_identity="abc", imatrix=False, budget_bytes=10**8,
                n_trials=5, objectives=("kl",), limits={"size": 9e7},
                measure=MeasureSettings(eval_windows=1, window=128), space_digest="d",
                heartbeat_s=2, grace_s=6)


def test_round_trip_and_stable_name() -> None:
    assert SearchJob.from_dict(JOB.to_dict()) == JOB
    assert JOB.study_name() == SearchJob.from_dict(JOB.to_dict()).study_name()
    assert replace(JOB, budget_bytes=10**8 + 1).study_name() != JOB.study_name()
    # the sensitivity every worker measures is the job's: another anchor count, another study
    anchored = replace(JOB, sensitivity_anchors=8)
    assert SearchJob.from_dict(anchored.to_dict()) == anchored
    assert anchored.study_name() != JOB.study_name()
    old = {k: v for k, v in JOB.to_dict().items() if k != "sensitivity_anchors"}
    assert SearchJob.from_dict(old).sensitivity_anchors == 0  # a job written before anchors


@pytest.mark.parametrize("change,needle", [
    ({"n_trials": 0}, "n_trials"), ({"grace_s": 2}, "grace_s"),
    ({"measure": None}, "not metrics of this job"), ({"objectives": ()}, "objectives"),
])
def test_validation(change: dict[str, object], needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        replace(JOB, **change)  # type: ignore[arg-type]


def test_store_load_rerun(tmp_path: Path) -> None:
    db = str(tmp_path / "s.db")
    name = create_job_study(JOB, db, warm_start_params={"size_step": 32})
    job, rdb = load_job(db, name)
    assert job == JOB and rdb.heartbeat_interval == 2 and rdb.grace_period == 6
    study = optuna.load_study(study_name=name, storage=storage_url(db))
    assert len(study.trials) == 1  # the queued warm start
    # a rerun with more trials updates the job and queues nothing again
    create_job_study(replace(JOB, n_trials=9), db, study_name=name, warm_start_params={"x": 1})
    assert load_job(db, name)[0].n_trials == 9
    assert len(optuna.load_study(study_name=name, storage=storage_url(db)).trials) == 1
    with pytest.raises(BadInput, match="different search job"):
        create_job_study(replace(JOB, budget_bytes=1), db, study_name=name)


def test_load_errors(tmp_path: Path) -> None:
    db = str(tmp_path / "s.db")
    with pytest.raises(BadInput, match="no study 'x'"):
        load_job(db, "x")
    optuna.create_study(storage=storage_url(db), study_name="bare")
    with pytest.raises(BadInput, match="holds no search job"):
        load_job(db, "bare")
    study = optuna.load_study(study_name="bare", storage=storage_url(db))
    study.set_user_attr(JOB_ATTR, {"version": 99})
    with pytest.raises(BadInput, match="unreadable search job"):
        load_job(db, "bare")
