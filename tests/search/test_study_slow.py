"""The search on the embedded SmolLM2-135M's measured table (slow: the table, ~1-1.5 min)."""

from __future__ import annotations

import logging
from pathlib import Path

import optuna
import pytest

from advisor import formats
from advisor.inspect import inspect_model
from advisor.search.exact import Allocator
from advisor.search.study import SearchConfig, run_search
from advisor.sensitivity import SensitivityTable

pytestmark = pytest.mark.slow
log = logging.getLogger(__name__)
optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.mark.parametrize("preset", ["Q3_K_M", "Q4_K_M"])
def test_search_beats_the_preset_at_its_size(embedded_sensitivity: SensitivityTable,
                                             tmp_path: Path, preset: str) -> None:
    table = embedded_sensitivity
    plan = formats.preset_plan(inspect_model("smollm2-135m"), preset)
    budget = table.space.size(plan)
    optimum = Allocator(table.items(), budget).best(budget)
    res = run_search(table, budget, tmp_path / "study.db", config=SearchConfig(n_trials=12))
    assert res.best is not None
    assert res.best.surrogate <= optimum.cost + 1e-9 and res.best.nbytes <= budget
    assert all(t.nbytes <= budget for t in res.trials)
    assert res.best.surrogate < table.surrogate(plan)
    log.info("%s: %d bytes, surrogate KL %.4f; search %d bytes, %.4f", preset, budget,
             table.surrogate(plan), res.best.nbytes, res.best.surrogate)


def test_frontier_dominates_the_presets(embedded_sensitivity: SensitivityTable) -> None:
    table = embedded_sensitivity
    spec = inspect_model("smollm2-135m")
    front = Allocator(table.items()).frontier()
    assert front[0].nbytes == table.space.min_size()
    for preset in ("Q2_K", "Q3_K_M", "Q4_K_M", "Q5_K_M"):
        plan = formats.preset_plan(spec, preset)
        size, cost = table.space.size(plan), table.surrogate(plan)
        best = [a for a in front if a.nbytes <= size][-1]
        assert best.cost <= cost + 1e-12
