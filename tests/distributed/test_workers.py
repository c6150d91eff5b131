"""Distributed search on a real engine: one study in PostgreSQL, three `advisor worker`
processes measuring real candidates, one SIGKILLed mid-trial."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from advisor.search.job import MeasureSettings, SearchJob
from advisor.search.study import storage_url

pytestmark = pytest.mark.slow

N_TRIALS = 4


def _job_study(url: str, n_trials: int, measure: MeasureSettings | None) -> tuple[str, SearchJob]:
    """Create a study of a small measured job on the embedded model, as `recommend` would."""
    from advisor.inspect import inspect_model
    from advisor.measure.quality.cache import file_identity
    from advisor.progress import Stages
    from advisor.search.job import create_job_study
    from advisor.search.study import PlanKnobs, SearchConfig
    from advisor.sensitivity import gguf_sensitivity
    from advisor.space import gguf_plan_space
    from advisor.targets import Targets

    spec = inspect_model("smollm2-135m")
    space = gguf_plan_space(spec)
    table = gguf_sensitivity(spec, space, imatrix=False, threads=0, stages=Stages(False))
    budget = space.min_size() + (space.max_size() - space.min_size()) // 3
    job = SearchJob(model="smollm2-135m", model_identity=file_identity(spec.path),
                    imatrix=False, budget_bytes=budget, n_trials=n_trials,
                    objectives=("kl",) if measure else ("surrogate_kl",),
                    targets=Targets().to_dict(), measure=measure, space_digest=space.digest(),
                    heartbeat_s=1, grace_s=4)
    warm = PlanKnobs(table, budget, SearchConfig().size_steps).warm_start_params()
    return create_job_study(job, url, warm_start_params=warm), job


def _worker(url: str, name: str, scratch: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "advisor.cli", "-q", "worker", "--study", name,
                             "--storage", url, "--threads", "1", "--scratch", str(scratch),
                             *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def test_three_workers_one_killed_mid_trial(postgres_url: str, tmp_path: Path) -> None:
    name, job = _job_study(postgres_url, N_TRIALS, MeasureSettings(eval_windows=1, window=128))
    scratch = [tmp_path / f"w{i}" for i in range(3)]
    victim = _worker(postgres_url, name, scratch[0])
    procs = [victim]
    try:
        deadline = time.monotonic() + 180
        # mid-trial: the victim's candidate is being written by llama.cpp's quantizer
        while not list(scratch[0].glob("measured-*/.candidate.partial-*/model.gguf")):
            assert victim.poll() is None, victim.communicate()
            assert time.monotonic() < deadline, "the victim never reached a trial"
            time.sleep(0.05)
        victim.send_signal(signal.SIGKILL)
        assert victim.wait(timeout=30) == -signal.SIGKILL
        # The survivors start once the killed trial's heartbeat is older than the grace period:
        # started with it, they could finish the study before any of their trials began after
        # that moment (it happened once in a full run), and nobody would look for stale trials.
        time.sleep(job.grace_s + 1)
        procs += [_worker(postgres_url, name, s) for s in scratch[1:]]
        for p in procs[1:]:
            out, err = p.communicate(timeout=300)
            assert p.returncode == 0, err
            assert "Traceback" not in err
    finally:
        for p in procs:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
                p.wait()

    study = optuna.load_study(study_name=name, storage=storage_url(postgres_url))
    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state is optuna.trial.TrialState.COMPLETE]
    failed = [t for t in trials if t.state is optuna.trial.TrialState.FAIL]
    assert len(done) >= N_TRIALS
    # every finished trial is kept with its measured metrics
    for t in done:
        m = t.user_attrs["plan"]["metrics"]
        assert 0 < m["kl"] < 5 and m["size"] > 50e6 and t.values[0] == m["kl"]
    # the killed trial was failed by the heartbeat check of a surviving worker ...
    assert len(failed) == 1, [(t.number, t.state.name) for t in trials]
    assert not [t for t in trials if t.state is optuna.trial.TrialState.RUNNING]
    # ... and its knobs queued again (run by a survivor, or still waiting when the study was full)
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == failed[0].number]
    assert len(retried) == 1 and retried[0].params == failed[0].params
    assert retried[0].state in (optuna.trial.TrialState.COMPLETE,
                                optuna.trial.TrialState.WAITING)
    # the killed worker's scratch candidate is not an artifact anyone could mistake as done
    assert not list(scratch[0].glob("measured-*/candidate/report.json"))


def test_worker_bad_study_and_storage(postgres_url: str, tmp_path: Path) -> None:
    for args, needle in [
        (["--study", "no-such-study", "--storage", postgres_url], "no study 'no-such-study'"),
        (["--study", "x", "--storage", "postgresql://advisor:secret@127.0.0.1:1/advisor"],
         "cannot open the study storage"),
    ]:
        r = subprocess.run([sys.executable, "-m", "advisor.cli", "worker", *args],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 2, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0] and "Traceback" not in r.stderr
        assert "secret" not in r.stderr  # the password never reaches the message


def test_finished_study_worker_exits_at_once(postgres_url: str) -> None:
    """A surrogate-only job: one worker finishes it; a second one finds nothing to do."""
    name, _ = _job_study(postgres_url, 3, None)
    for ran in (3, 0):
        r = subprocess.run([sys.executable, "-m", "advisor.cli", "-q", "worker", "--study", name,
                            "--storage", postgres_url, "--json"], capture_output=True,
                           text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        summary = json.loads(r.stdout)
        assert summary["finished"] == 3 and summary["evaluations"] == 0
        study = optuna.load_study(study_name=name, storage=storage_url(postgres_url))
        assert len(study.trials) == 3, f"expected this worker to run {ran}"


def test_recommend_in_postgresql_then_a_worker_joins(postgres_url: str, tmp_path: Path) -> None:
    """`recommend --storage postgresql://...` keeps its study (with its job) in PostgreSQL; a
    worker started on it afterwards rebuilds the job and finds the study finished."""
    out = tmp_path / "rec"
    r = subprocess.run([sys.executable, "-m", "advisor.cli", "recommend", "--storage",
                        postgres_url, "--max-size", "93510208", "--no-imatrix", "--trials", "6",
                        "--candidates", "1", "--presets", "1", "--eval-windows", "1",
                        "--bench-requests", "1", "--prompt-tokens", "32", "--max-new-tokens",
                        "8", "--out", str(out), "--json"], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    search = json.loads(r.stdout)["search"]
    assert search["storage"].startswith("postgresql+psycopg2://") and search["trials"] == 6
    assert not (tmp_path / "rec.study.db").exists()
    r = subprocess.run([sys.executable, "-m", "advisor.cli", "worker", "--study",
                        search["study_name"], "--storage", postgres_url, "--json"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["finished"] == 6 and summary["evaluations"] == 0
