"""`advisor recommend`: inspect, search, realize, measure and pick one deployable artifact.

    pipeline.py    the orchestration (stages called on typed values)
    config.py      RecommendConfig (the CLI's and TUI's defaults) and the targets from flags
    offers.py      which backends the target is offered, and the HF checkpoint candidates
    budget.py      which target binds and the bytes left for the weights
    candidates.py  Candidate, the stock presets, realization into <out>.candidates/
    plans.py       the Optuna studies whose best plans become candidates
    measured.py    the measured phase's evaluate(assignment) (quantize and measure a trial)
    results.py     CandidateResult: each candidate measured and held against the targets
    pick.py        the pick, the infeasible verdict, Pareto front and rank correlation
    emit.py        report.json (built in memory, written once) and the artifact at --out
    worker.py      `advisor worker`: trials of a stored study from any host
"""

from __future__ import annotations

from advisor.recommend.config import (
    DEFAULT_PRESETS,
    RecommendConfig,
    targets_from_args,
)
from advisor.recommend.pick import pareto_front, spearman
from advisor.recommend.pipeline import recommend

__all__ = ["DEFAULT_PRESETS", "RecommendConfig", "pareto_front", "recommend", "spearman",
           "targets_from_args"]
