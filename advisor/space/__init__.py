"""The plan space: what a plan may be, before anything is measured.

    named.py    a format name (preset, GGML type, HF scheme) as a per-tensor QuantPlan
    choices.py  `PlanSpace` and `TensorChoice`: the per-tensor types the GGUF search may pick
    hf_mix.py   the HF int4/int8/float mix, one choice per fused group
"""

from __future__ import annotations

from advisor.space.choices import (
    DEFAULT_FLOOR,
    DEFAULT_MENU,
    FLOOR_ROLES,
    IMATRIX_MENU,
    PlanSpace,
    TensorChoice,
    floored_roles,
    gguf_plan_space,
)
from advisor.space.hf_mix import HfPlanSpace, hf_plan_space
from advisor.space.named import canonical_format, plan_for_format

__all__ = ["DEFAULT_FLOOR", "DEFAULT_MENU", "FLOOR_ROLES", "IMATRIX_MENU", "HfPlanSpace",
           "PlanSpace", "TensorChoice", "canonical_format", "floored_roles", "gguf_plan_space",
           "hf_plan_space", "plan_for_format"]
