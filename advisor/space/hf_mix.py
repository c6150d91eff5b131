"""The per-layer plan space of the HF checkpoint backends (rtn / gptq / awq): W4A16, W8A16 or
float for each group of linears that vLLM runs as one GEMM.

vLLM fuses q/k/v into `qkv_proj` and gate/up into `gate_up_proj`, and one fused matrix has one
scheme (backends.hf.base.plan_job refuses mixed precision inside a fused group), so the unit of
choice is the group: per decoder layer `attn_qkv` (q, k, v), `attn_o`, `mlp_gate_up` (gate, up)
and `mlp_down`. The embedding, the LM head and the norms stay float16 (fixed entries, counted in
the bytes). Bytes are advisor.formats' compressed-tensors size model of each member.

The space is a `PlanSpace` whose "tensors" are these groups, so the Optuna study, the exact
allocator and the sensitivity table work on it unchanged; `plan()` expands a group's scheme to
its member tensors and returns a plan for `backend`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from advisor import formats
from advisor.modelspec import LINEAR_ROLES, ModelSpec, Role
from advisor.plan import QuantPlan
from advisor.space.choices import PlanSpace, TensorChoice

HF_MENU = ("W4A16", "W8A16", "F16")
"""Per group: int4 or int8 weights (16-bit activations), or left in float16."""
FLOAT = "F16"
# Each group's name suffix and the roles of its members, in the order vLLM fuses them.
GROUPS: tuple[tuple[str, tuple[Role, ...]], ...] = (
    ("attn_qkv", (Role.ATTN_Q, Role.ATTN_K, Role.ATTN_V)),
    ("attn_o", (Role.ATTN_O,)),
    ("mlp_gate_up", (Role.MLP_GATE, Role.MLP_UP)),
    ("mlp_down", (Role.MLP_DOWN,)),
)


@dataclass(frozen=True)
class HfPlanSpace(PlanSpace):
    """Candidate schemes of every fused group of linears (and the fixed float tensors)."""

    backend: str = "rtn"
    group_size: int = 128
    members: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def plan(self, assignment: Mapping[str, str], label: str = "") -> QuantPlan:
        full = self.complete(assignment)
        tensor_formats = {}
        for name, scheme in full.items():
            for member in self.members.get(name, (name,)):
                tensor_formats[member] = scheme
        return QuantPlan(self.backend, tensor_formats, options={"group_size": self.group_size},
                         label=label)

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "kind": "hf", "backend": self.backend,
                "group_size": self.group_size,
                "members": {k: list(v) for k, v in sorted(self.members.items())}}


def hf_plan_space(spec: ModelSpec, backend: str = "rtn", group_size: int = 128,
                  menu: Sequence[str] = HF_MENU) -> HfPlanSpace:
    """The group-wise space of `spec` for an int HF backend. A group whose members cannot all
    take a scheme (a role outside GROUPS, e.g. an already fused qkv tensor) stays float."""
    by_layer: dict[tuple[int, Role], list[Any]] = {}
    fixed: list[TensorChoice] = []
    for t in spec.tensors:
        if t.role in LINEAR_ROLES and t.layer is not None:
            by_layer.setdefault((t.layer, t.role), []).append(t)
        else:
            fixed.append(TensorChoice(t.canonical, t.role, t.layer, t.shape, (FLOAT,),
                                      (formats.tensor_bytes(FLOAT, t.shape),)))
    choices: list[TensorChoice] = []
    members: dict[str, tuple[str, ...]] = {}
    grouped_roles = {r for _, roles in GROUPS for r in roles}
    for layer in sorted({k[0] for k in by_layer}):
        for suffix, roles in GROUPS:
            ts = [t for r in roles for t in by_layer.get((layer, r), [])]
            if not ts:
                continue
            name = f"blk.{layer}.{suffix}"
            members[name] = tuple(t.canonical for t in ts)
            sizes = tuple(sum(formats.tensor_bytes(s, t.shape, group_size=_group(t, group_size))
                              for t in ts) for s in menu)
            order = sorted(range(len(menu)), key=lambda i: sizes[i])
            choices.append(TensorChoice(name, roles[0], layer, ts[0].shape,
                                        tuple(menu[i] for i in order),
                                        tuple(sizes[i] for i in order)))
        for (lyr, role), ts in by_layer.items():  # linears no group covers stay float
            if lyr == layer and role not in grouped_roles:
                fixed.extend(TensorChoice(t.canonical, t.role, t.layer, t.shape, (FLOAT,),
                                          (formats.tensor_bytes(FLOAT, t.shape),)) for t in ts)
    return HfPlanSpace(spec.path, tuple(menu), FLOAT, False, (*choices, *fixed),
                       backend=backend, group_size=group_size, members=members)


def _group(t: Any, group_size: int) -> int:
    """The group size written for `t`: per channel where the rows do not split into whole groups
    (as backends.hf.base.plan_job falls back)."""
    return group_size if group_size != -1 and int(t.shape[-1]) % group_size == 0 else -1
