"""`advisor recommend`: inspect, search, realize, measure and pick one deployable artifact."""

from __future__ import annotations

from advisor.recommend.pipeline import (
    DEFAULT_PRESETS,
    RecommendConfig,
    recommend,
    targets_from_args,
)
from advisor.recommend.summary import pareto_front, spearman

__all__ = ["DEFAULT_PRESETS", "RecommendConfig", "pareto_front", "recommend", "spearman",
           "targets_from_args"]
