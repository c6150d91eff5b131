"""HF checkpoint candidates of `recommend --backend`: which backends the target can serve, the
uniform scheme of each offered writer, and the per-layer int4/int8/float mix searched by the
same Optuna study as the GGUF plans.

`--backend auto` (the default) offers llama.cpp (GGUF) on every target, and each HF scheme whose
writer is installed and whose serving runtime runs on the target (backends.hf_serve: vLLM on an
NVIDIA/AMD GPU from the documented compute capabilities, bitsandbytes where CUDA is); a CPU-only
target therefore gets GGUF candidates only, and the report says why each HF backend was not
offered. `--backend NAME` offers that backend alone.

Under `auto` one writer per scheme is realized (AUTO_WRITERS): the int4 method AUTO_INT4 (see
its note), rtn for W8A16 (8-bit round-to-nearest is within measurement noise of float), fp8,
smoothquant and nf4 for their schemes. Quality of an HF candidate is measured by loading the
written checkpoint with transformers on this CPU against the same F16 reference as the GGUF
candidates; its memory and p95 are predicted for the target (no vLLM runs here) and labelled so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from advisor.errors import BadInput
from advisor.hardware import HardwareProfile
from advisor.modelspec import ModelSpec
from advisor.plan import QuantPlan
from advisor.space import BACKEND_SCHEMES, plan_for_format

log = logging.getLogger(__name__)

GGUF = "gguf"
HF_BACKENDS = ("rtn", "gptq", "awq", "fp8", "smoothquant", "nf4")
BACKEND_CHOICES = ("auto", GGUF, *HF_BACKENDS)
INT_WRITERS = ("rtn", "gptq", "awq")  # the writers of the searched int4/int8/float mix
AUTO_INT4 = "awq"
"""The int4 writer `auto` realizes (uniform W4A16 and the searched mixes): on the embedded model
at 4 bits, group size 128, judged on held-out text (BENCHMARKS.md), AWQ measured mean KL 0.422
(0.67x RTN's 0.631) in 205 s, GPTQ 0.528 (0.84x) in 154 s."""
AUTO_WRITERS = {"W4A16": AUTO_INT4, "W8A16": "rtn", "W8A8-FP8": "fp8",
                "W8A8-INT8": "smoothquant", "NF4": "nf4"}
HF_KINDS = ("checkpoint", "checkpoint-search")
DEFAULT_GROUP = 128


@dataclass(frozen=True)
class Offer:
    """Whether `recommend` offers a backend's candidates on the target, and why (not)."""

    backend: str
    offered: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "offered": self.offered, "reason": self.reason}


def backend_offers(requested: str, hw: HardwareProfile) -> list[Offer]:
    """One Offer per backend (GGUF first); BadInput for an unknown `requested`."""
    from backends import get_backend
    from backends.hf_serve import serves_scheme

    if requested not in BACKEND_CHOICES:
        raise BadInput(f"--backend {requested!r} is not a backend recommend knows",
                       f"use one of {', '.join(BACKEND_CHOICES)}")
    offers = []
    for name in (GGUF, *HF_BACKENDS):
        if requested not in ("auto", name):
            offers.append(Offer(name, False, f"not requested (--backend {requested})"))
            continue
        if name != GGUF:
            # the target's gate first (the same one the backend's serves_on applies): it needs
            # no import of the backend (torch, transformers)
            serves = serves_scheme(BACKEND_SCHEMES[name][0], hw)
            if not serves:
                offers.append(Offer(name, False, serves.reason))
                continue
        backend = get_backend(name)
        avail = backend.available()
        if not avail:
            offers.append(Offer(name, False, f"cannot run here: {avail.reason}"))
            continue
        if name == GGUF:
            serves = backend.serves_on(hw)
        offers.append(Offer(name, serves.ok, serves.reason or avail.reason))
    return offers


def offered(offers: list[Offer]) -> set[str]:
    return {o.backend for o in offers if o.offered}


def uniform_plans(spec: ModelSpec, requested: str, offers: list[Offer],
                  group_size: int = DEFAULT_GROUP) -> list[QuantPlan]:
    """Every offered scheme written uniformly on the decoder's linears: one writer per scheme
    under `auto` (AUTO_WRITERS), each scheme of the backend otherwise."""
    ok = offered(offers)
    pairs = ([(s, w) for s, w in AUTO_WRITERS.items() if w in ok] if requested == "auto" else
             [(s, requested) for s in BACKEND_SCHEMES.get(requested, ()) if requested in ok])
    return [plan_for_format(spec, scheme, group_size=group_size, backend=writer)
            for scheme, writer in pairs]


def int_writer(requested: str, offers: list[Offer]) -> str | None:
    """The backend that writes the searched int4/int8/float mixes, or None when none is
    offered."""
    ok = offered(offers)
    if requested == "auto":
        return AUTO_INT4 if AUTO_INT4 in ok else next((w for w in INT_WRITERS if w in ok), None)
    return requested if requested in INT_WRITERS and requested in ok else None


def fits_targets(est: Any, max_size: int | None, limits: list[tuple[str, int]]) -> bool:
    """Whether an estimate's file and total memory are within `--max-size` and the memory
    limits (key, bytes)."""
    return ((max_size is None or est.file_size.value <= max_size)
            and all(est.total_memory.value <= v for _, v in limits))


def hf_candidates(spec: ModelSpec, requested: str, offers: list[Offer], hw: HardwareProfile,
                  wl: Any, max_size: int | None, limits: list[tuple[str, int]],
                  search: Any, group_size: int = DEFAULT_GROUP
                  ) -> tuple[list[tuple[str, str, QuantPlan, float | None]], dict[str, Any]]:
    """(label, kind, plan, surrogate KL) of the HF candidates that are predicted to fit, and a
    summary for the report. `search(space, budget)` runs the study on the int mix and returns
    [(label, plan, surrogate)] (the pipeline's Optuna study; not called when no int writer is
    offered or no size/memory budget binds: then the uniform schemes are the candidates)."""
    from advisor.estimate import estimate
    from advisor.search.hf_space import hf_plan_space

    out: list[tuple[str, str, QuantPlan, float | None]] = []
    info: dict[str, Any] = {"uniform": []}
    for plan in uniform_plans(spec, requested, offers, group_size):
        est = estimate(spec, plan, hw, wl)
        fits = fits_targets(est, max_size, limits)
        info["uniform"].append({"label": plan.label, "backend": plan.backend, "fits": fits,
                                "size_predicted": int(est.file_size.value),
                                "memory_predicted": est.total_memory.value})
        if fits:
            out.append((plan.label, "checkpoint", plan, None))
    writer = int_writer(requested, offers)
    if writer is None or (max_size is None and not limits):
        return out, info
    space = hf_plan_space(spec, backend=writer, group_size=group_size)
    smallest = {t.name: t.types[0] for t in space.free}
    est = estimate(spec, space.plan(smallest), hw, wl)
    tensor_bytes = space.size(smallest)
    budgets = []
    if max_size is not None:
        budgets.append(max_size - int(est.file_size.value - tensor_bytes))
    budgets += [v - int(est.total_memory.value - tensor_bytes) for _, v in limits]
    budget = min(min(budgets), space.max_size())
    info["search_budget_tensor_bytes"] = budget
    info["writer"] = writer
    if budget < space.min_size():
        info["search"] = (f"skipped: {budget:,} bytes for tensors is below the smallest int "
                          f"mix ({space.min_size():,})")
        return out, info
    seen = {p.digest() for _, _, p, _ in out}
    for label, plan, surrogate in search(space, budget):
        if plan.digest() not in seen:
            seen.add(plan.digest())
            out.append((label, "checkpoint-search", plan, surrogate))
    return out, info
