"""A small synthetic sensitivity table: costs fall with bits per weight, random per tensor."""

from __future__ import annotations

import random

from advisor import formats
from advisor.modelspec import Role
from advisor.sensitivity.table import SensitivityConfig, SensitivityTable
from advisor.space.choices import PlanSpace, TensorChoice

_LAYER = (
    (Role.ATTN_Q, "attn_q", (64, 64), ("Q4_0", "Q5_0", "Q5_1", "Q8_0")),
    (Role.ATTN_V, "attn_v", (32, 64), ("Q4_0", "Q5_0", "Q5_1", "Q8_0")),
    (Role.MLP_DOWN, "ffn_down", (64, 256), ("Q2_K", "Q3_K", "Q4_0", "Q4_K", "Q5_K", "Q6_K",
                                            "Q8_0")),
    (Role.NORM, "attn_norm", (64,), ("F32",)),
)


def synthetic_table(seed: int = 0, n_layers: int = 6) -> SensitivityTable:
    rng = random.Random(seed)
    tensors = [TensorChoice("token_embd.weight", Role.EMBEDDING, None, (500, 64), ("Q8_0",),
                            (formats.tensor_bytes("Q8_0", (500, 64)),))]
    for layer in range(n_layers):
        for role, base, shape, types in _LAYER:
            ordered = tuple(sorted(types, key=lambda g: formats.tensor_bytes(g, shape)))
            tensors.append(TensorChoice(f"blk.{layer}.{base}.weight", role, layer, shape,
                                        ordered,
                                        tuple(formats.tensor_bytes(g, shape) for g in ordered)))
    costs: dict[str, dict[str, float]] = {}
    for t in tensors:
        scale = rng.lognormvariate(0, 1.5)
        costs[t.name] = {g: (0.0 if g == "F32" else
                             scale * 2.0 ** (-formats.ggml_type(g).bits_per_weight)
                             * rng.uniform(0.7, 1.3))
                         for g in t.types}
    space = PlanSpace("synthetic", ("Q2_K", "Q3_K", "Q4_0", "Q4_K", "Q5_0", "Q5_K", "Q6_K",
                                    "Q8_0"), "Q6_K", False, tuple(tensors))
    return SensitivityTable(space, costs, {t.name: t.types for t in tensors},
                            SensitivityConfig(), "synthetic", "0" * 64, None, 0, 0, 0.0)
