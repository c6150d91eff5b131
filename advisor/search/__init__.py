"""Plan search: exact allocation on the sensitivity table and the Optuna study that explores the
plan space (advisor.space) under measured constraints. The search sees a PlanSpace, a cost table
and an optional `evaluate(assignment) -> metrics`; never a backend."""

from __future__ import annotations

from advisor.search.exact import Allocation, Allocator, allocate, pareto_frontier
from advisor.search.study import SearchConfig, SearchResult, TrialRecord, run_search

__all__ = ["Allocation", "Allocator", "SearchConfig", "SearchResult", "TrialRecord", "allocate",
           "pareto_frontier", "run_search"]
