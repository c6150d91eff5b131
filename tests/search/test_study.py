"""The Optuna study: seeded, exact at trial 0, within budget, resumable from SQLite."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from advisor import formats
from advisor.errors import Infeasible
from advisor.search.exact import Allocator
from advisor.search.study import SearchConfig, run_search, storage_url
from advisor.sensitivity.table import SensitivityTable
from tests.search.synth import synthetic_table

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="module")
def table() -> SensitivityTable:
    return synthetic_table()


def _budget(table: SensitivityTable, frac: float = 0.4) -> int:
    lo, hi = table.space.min_size(), table.space.max_size()
    return int(lo + frac * (hi - lo))


def _memory() -> optuna.storages.InMemoryStorage:
    return optuna.storages.InMemoryStorage()


def test_same_seed_same_trials(table: SensitivityTable) -> None:
    budget = _budget(table)
    cfg = SearchConfig(n_trials=15, seed=7)
    a = run_search(table, budget, _memory(), config=cfg)
    b = run_search(table, budget, _memory(), config=cfg)
    assert [(t.params, t.assignment) for t in a.trials] == \
        [(t.params, t.assignment) for t in b.trials]
    assert a.best is not None and b.best is not None
    assert a.best_plan().digest() == b.best_plan().digest()
    c = run_search(table, budget, _memory(), config=SearchConfig(n_trials=15, seed=8))
    assert [t.params for t in c.trials] != [t.params for t in a.trials]


@pytest.mark.parametrize("sampler", ["tpe", "nsga2", "random"])
@pytest.mark.parametrize("frac", [0.1, 0.4, 0.8])
def test_reaches_the_exact_optimum_within_budget(table: SensitivityTable, sampler: str,
                                                 frac: float) -> None:
    budget = _budget(table, frac)
    optimum = Allocator(table.items(), budget).best(budget)
    res = run_search(table, budget, _memory(), config=SearchConfig(n_trials=12, sampler=sampler))
    assert res.best is not None
    assert res.best.surrogate <= optimum.cost + 1e-9
    assert res.best.nbytes <= budget
    if abs(res.best.surrogate - optimum.cost) <= 1e-9:
        assert res.best.nbytes <= optimum.nbytes
    for t in res.trials:
        assert t.nbytes == table.space.size(t.assignment)
        assert t.surrogate == pytest.approx(table.surrogate(t.assignment), abs=1e-12)
        assert t.feasible == (t.nbytes <= budget)


def test_search_without_warm_start_finds_the_optimum(table: SensitivityTable) -> None:
    budget = _budget(table)
    optimum = Allocator(table.items(), budget).best(budget)
    res = run_search(table, budget, _memory(),
                     config=SearchConfig(n_trials=40, warm_start=False, size_steps=8))
    assert res.best is not None and res.best.surrogate <= optimum.cost + 1e-9


@pytest.mark.parametrize("extra", [0, 1000, 20000])
def test_every_trial_fits_the_budget(table: SensitivityTable, extra: int) -> None:
    budget = table.space.min_size() + extra
    res = run_search(table, budget, _memory(), config=SearchConfig(n_trials=20, seed=1))
    assert res.best is not None and res.best.nbytes <= budget
    assert all(t.feasible and t.nbytes <= budget for t in res.trials)


def test_budget_below_the_space_is_infeasible(table: SensitivityTable) -> None:
    with pytest.raises(Infeasible):
        run_search(table, table.space.min_size() - 1, _memory())


def test_evaluate_hook_objectives_and_limits(table: SensitivityTable) -> None:
    budget = _budget(table, 0.9)

    def latency(assignment: dict[str, str]) -> dict[str, float]:
        # a stand-in for a measured latency: K-quants slower per byte than legacy types
        return {"latency_s": sum(
            formats.tensor_bytes(g, table.space.choice(n).shape) * (2e-9 if "_K" in g else 1e-9)
            for n, g in assignment.items())}

    unlimited = run_search(table, budget, _memory(), evaluate=latency,
                           config=SearchConfig(n_trials=10))
    assert unlimited.best is not None
    limit = 0.9 * unlimited.best.metrics["latency_s"]
    res = run_search(table, budget, _memory(), evaluate=latency, limits={"latency_s": limit},
                     config=SearchConfig(n_trials=25))
    assert res.best is not None and res.best.metrics["latency_s"] <= limit
    assert all(t.metrics["latency_s"] <= limit for t in res.trials if t.feasible)
    both = run_search(table, budget, _memory(), evaluate=latency,
                      objectives=("surrogate_kl", "latency_s"), config=SearchConfig(n_trials=25))
    front = [(t.surrogate, t.metrics["latency_s"]) for t in both.pareto]
    assert front and all(not (a[0] <= b[0] and a[1] <= b[1] and a != b)
                         for a in front for b in front)


def test_interrupted_study_resumes_from_sqlite(table: SensitivityTable, tmp_path: Path) -> None:
    budget = _budget(table)
    db = tmp_path / "study.db"
    cfg = SearchConfig(n_trials=10, seed=3, size_steps=8)
    seen: list[str] = []

    def evaluate(assignment: dict[str, str]) -> dict[str, float]:
        seen.append(table.space.plan(assignment).digest())
        if len(seen) == 4:
            raise KeyboardInterrupt  # the process is stopped during trial 4's evaluation
        return {}

    with pytest.raises(KeyboardInterrupt):
        run_search(table, budget, db, config=cfg, evaluate=evaluate)
    first = optuna.load_study(study_name=cfg.study_name, storage=storage_url(db))
    kept = [(t.number, t.params) for t in first.trials
            if t.state == optuna.trial.TrialState.COMPLETE]
    assert 1 <= len(kept) < 10
    calls_before = len(seen)
    res = run_search(table, budget, db, config=cfg, evaluate=evaluate)
    assert len(res.trials) == 10
    assert [(t.number, t.params) for t in res.trials[:len(kept)]] == kept
    # finished trials are not evaluated again; a plan already scored is reused, not rescored
    assert len(seen) - calls_before <= 10 - len(kept)
    assert len(seen) - len(set(seen)) <= 1  # at most the interrupted plan is evaluated again
    again = run_search(table, budget, db, config=cfg, evaluate=evaluate)
    assert len(again.trials) == 10 and again.evaluations == 0


def test_storage_url_and_config_validation(tmp_path: Path) -> None:
    assert storage_url(tmp_path / "a.db") == f"sqlite:///{(tmp_path / 'a.db').resolve()}"
    # a bare PostgreSQL URL gets the declared driver (SQLAlchemy 2.1 would pick psycopg 3)
    assert storage_url("postgresql://h/db") == "postgresql+psycopg2://h/db"
    assert storage_url("postgresql+psycopg://h/db") == "postgresql+psycopg://h/db"
    with pytest.raises(ValueError, match="sampler"):
        SearchConfig(sampler="cmaes")
    with pytest.raises(ValueError, match="n_trials"):
        SearchConfig(n_trials=0)


def test_unknown_objective_or_limit_is_refused(table: SensitivityTable) -> None:
    from advisor.errors import BadInput

    with pytest.raises(BadInput, match="latency"):
        run_search(table, _budget(table), _memory(), objectives=("latency",),
                   config=SearchConfig(n_trials=2))
    with pytest.raises(BadInput, match="latency"):
        run_search(table, _budget(table), _memory(), limits={"latency": 1.0},
                   config=SearchConfig(n_trials=2))
