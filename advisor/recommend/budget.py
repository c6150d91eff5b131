"""The byte budget of a recommendation: which target binds, and what is left for the weights.

Pure functions of the model, the target's predictions and the plan space: no file is read and
nothing is measured here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from advisor.errors import Infeasible
from advisor.estimate import Estimate
from advisor.formats import GGUF_ALIGNMENT
from advisor.modelspec import ModelSpec
from advisor.space import PlanSpace, floored_roles, gguf_plan_space
from advisor.targets import Targets


def memory_limits(targets: Targets) -> list[tuple[str, int]]:
    """The memory targets that are set, as (flag, bytes): `vram`, `mem`."""
    return [(k, v) for k, v in (("vram", targets.vram_bytes), ("mem", targets.mem_bytes))
            if v is not None]


def fits_targets(est: Estimate, max_size: int | None, limits: list[tuple[str, int]]) -> bool:
    """Whether an estimate's file and total memory are within `--max-size` and the memory
    limits (key, bytes)."""
    return ((max_size is None or est.file_size.value <= max_size)
            and all(est.total_memory.value <= v for _, v in limits))


@dataclass(frozen=True)
class Budget:
    """What the targets leave for a GGUF plan's file and tensors."""

    binding: str | None
    """The target that leaves the least: "max-size", "vram", "mem", "device memory", or None."""
    file_bytes: int | None
    """Bytes the file may take (None: nothing binds)."""
    runtime_bytes: int
    """Predicted KV cache and runtime overhead, taken off a memory target."""
    smallest_plan_bytes: int
    largest_plan_bytes: int
    tensor_bytes: int | None
    """What `file_bytes` leaves for the tensors (metadata and alignment off), at most the
    largest plan's."""

    def search_bytes(self, space: PlanSpace) -> int:
        """The tensor budget the search runs at (the largest plan when nothing binds)."""
        return self.tensor_bytes if self.tensor_bytes is not None else space.max_size()

    def below_smallest(self, space: PlanSpace) -> bool:
        return self.tensor_bytes is not None and self.tensor_bytes < space.min_size()

    def to_dict(self) -> dict[str, Any]:
        return {"binding": self.binding, "file_bytes": self.file_bytes,
                "runtime_bytes_predicted": self.runtime_bytes,
                "smallest_plan_bytes": self.smallest_plan_bytes,
                "largest_plan_bytes": self.largest_plan_bytes}


def plan_budget(spec: ModelSpec, reference: Estimate, targets: Targets,
                space: PlanSpace) -> Budget:
    """The budget of `space` under `targets`; `reference` is the target's estimate of a
    reference plan (Q8_0), whose KV cache and overhead every plan shares."""
    runtime = int(reference.kv_cache.value + reference.overhead.value)
    budgets = []
    if targets.max_size_bytes is not None:
        budgets.append(("max-size", targets.max_size_bytes))
    for key, limit in memory_limits(targets):
        budgets.append((key, limit - runtime))
    if not budgets and reference.device_memory is not None:
        budgets.append(("device memory", int(reference.device_memory.value) - runtime))
    binding, file_bytes = min(budgets, key=lambda b: b[1]) if budgets else (None, None)
    overhead = spec.metadata_bytes + GGUF_ALIGNMENT * len(space.tensors)
    tensor_bytes = None
    if file_bytes is not None:
        tensor_bytes = min(file_bytes - overhead, space.max_size())
    return Budget(binding, file_bytes, runtime, overhead + space.min_size(),
                  overhead + space.max_size(), tensor_bytes)


def fit_space(spec: ModelSpec, reference: Estimate, targets: Targets, imatrix: bool
              ) -> tuple[PlanSpace, PlanSpace | None, Budget, dict[str, Any]]:
    """The GGUF plan space the search runs in, the floor's subspace when the search also runs
    there, the budget, and what the report says of the embedding/LM-head floor.

    The floor (DEFAULT_FLOOR on the LM head, and on the embedding where it is tied to the head:
    advisor.space.floored_roles) is a preference, not a wall: the search runs in the whole space
    (the head and embedding as ordinary tensors with their own measured sensitivity) and, when
    the floor's smallest plan fits the budget, also in the floored subspace, and the measured
    phase decides between them (advisor.recommend.plans.gguf_search). Where the floor does not
    fit, `floor.relaxed` says so and why. Under the whole space's smallest plan the search cannot
    run: the report then names the smallest budget at which it can (skipped_search)."""
    free = gguf_plan_space(spec, imatrix=imatrix, floor_roles=())
    budget = plan_budget(spec, reference, targets, free)
    floor: dict[str, Any] = {"roles": [r.value for r in floored_roles(spec)], "relaxed": False}
    if not floor["roles"]:
        return free, None, budget, floor
    floored = gguf_plan_space(spec, imatrix=imatrix)
    floor["type"] = floored.floor
    floored_budget = plan_budget(spec, reference, targets, floored)
    if not floored_budget.below_smallest(floored):
        return free, floored, budget, floor
    floor.update(relaxed=True, why=(
        f"with {floored.floor} on the {' and '.join(floor['roles'])} the smallest plan is "
        f"{floored_budget.smallest_plan_bytes:,} bytes, over the {budget.binding} budget of "
        f"{budget.file_bytes:,}: the search treats them as ordinary tensors (smallest plan "
        f"{budget.smallest_plan_bytes:,} bytes)"))
    return free, None, budget, floor


def skipped_search(budget: Budget, space: PlanSpace) -> dict[str, Any]:
    """Why the search did not run at `budget`, and the smallest budget at which it can."""
    return {"search_skipped": (
                f"the {budget.binding} budget leaves {max(budget.tensor_bytes or 0, 0):,} bytes "
                f"for tensors, under the smallest plan's {space.min_size():,}"),
            "smallest_searchable_file_bytes": budget.smallest_plan_bytes,
            "budget_tensor_bytes": budget.tensor_bytes}


def raise_below_smallest(budget: Budget, spec: ModelSpec, targets: Targets,
                         presets: list[tuple[str, int]], flag: str) -> None:
    """Infeasible (exit 3) for a budget under the smallest plan and every preset: the nearest
    feasible size, or how much more memory the smallest plan needs. `presets` are (label,
    predicted bytes); `flag` is --max-size as the user wrote it."""
    smallest = budget.smallest_plan_bytes
    if budget.binding == "max-size":
        label, size = min(presets, key=lambda p: p[1])
        raise Infeasible(
            f"{flag} ({targets.max_size_bytes:,} bytes) is below the smallest plan of "
            f"{spec.name} ({smallest:,} bytes) and every llama.cpp preset",
            f"nearest feasible: --max-size {smallest} (the smallest plan), or {label} at "
            f"{size:,} bytes")
    raise Infeasible(
        f"--{budget.binding} leaves {max(budget.file_bytes or 0, 0):,} bytes for weights after "
        f"{budget.runtime_bytes:,} bytes of predicted KV cache and runtime overhead; the smallest "
        f"plan of {spec.name} needs {smallest:,} bytes",
        f"raise --{budget.binding} to at least {smallest + budget.runtime_bytes:,} bytes or "
        "shrink the context/concurrency")
