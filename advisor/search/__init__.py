"""Plan search: the per-tensor plan space, exact allocation on the sensitivity table, and the
Optuna study that explores it under measured constraints."""

from __future__ import annotations

from advisor.search.exact import Allocation, Allocator, allocate, pareto_frontier
from advisor.search.space import (
    DEFAULT_FLOOR,
    DEFAULT_MENU,
    IMATRIX_MENU,
    PlanSpace,
    TensorChoice,
    gguf_plan_space,
)
from advisor.search.study import SearchConfig, SearchResult, TrialRecord, run_search

__all__ = [
    "DEFAULT_FLOOR", "DEFAULT_MENU", "IMATRIX_MENU", "Allocation", "Allocator", "PlanSpace",
    "SearchConfig", "SearchResult", "TensorChoice", "TrialRecord", "allocate",
    "gguf_plan_space", "pareto_frontier", "run_search",
]
