"""HF checkpoint candidates of `recommend --backend`: which backends the target can serve, the
uniform scheme of each offered writer, and the per-layer int4/int8/float mix searched by the
same Optuna study as the GGUF plans.

`--backend auto` (the default) offers llama.cpp (GGUF) on every target, and each HF scheme whose
writer is installed and whose serving runtime runs on the target (backends.hf.serve: vLLM on an
NVIDIA/AMD GPU from the documented compute capabilities, bitsandbytes where CUDA is); a CPU-only
target therefore gets GGUF candidates only, and the report says why each HF backend was not
offered. `--backend NAME` offers that backend alone.

Under `auto` one writer per scheme is realized (auto_writers(), from the `auto=` of the
declarations in backends/__init__.py: AWQ for W4A16, with its measured reason there; otherwise the
first declared writer: rtn for W8A16, where 8-bit round-to-nearest is within measurement noise of
float). Quality of an HF candidate is measured by loading the
written checkpoint with transformers on this CPU against the same F16 reference as the GGUF
candidates; its memory and p95 are predicted for the target (no vLLM runs here) and labelled so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import backends
from advisor import formats
from advisor.errors import BadInput
from advisor.hardware import HardwareProfile
from advisor.modelspec import ModelSpec
from advisor.plan import QuantPlan
from advisor.recommend.budget import fits_targets
from advisor.recommend.candidates import Candidate
from advisor.space import HfPlanSpace
from advisor.space.named import plan_for_format

log = logging.getLogger(__name__)

GGUF = "gguf"


def hf_backends() -> tuple[str, ...]:
    return backends.hf_backends()


def backend_choices() -> tuple[str, ...]:
    """What `--backend` accepts: auto and every declared backend (GGUF first)."""
    return ("auto", *backends.names())


def auto_writers() -> dict[str, str]:
    """scheme -> the writer `auto` realizes (backends.registry.auto_writer)."""
    out: dict[str, str] = {}
    for scheme in formats.QUANT_SCHEMES:
        writer = backends.registry.auto_writer(scheme)
        if writer is not None:
            out[scheme] = writer
    return out


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
    from backends.hf import serves_scheme

    if requested not in backend_choices():
        raise BadInput(f"--backend {requested!r} is not a backend recommend knows",
                       f"use one of {', '.join(backend_choices())}")
    offers = []
    for name in backends.names():
        if requested not in ("auto", name):
            offers.append(Offer(name, False, f"not requested (--backend {requested})"))
            continue
        gguf = backends.entry(name).is_gguf
        if not gguf:
            # the target's gate first (the same one the backend's serves_on applies): it needs
            # no import of the backend (torch, transformers)
            serves = serves_scheme(backends.registry.schemes_of(name)[0], hw)
            if not serves:
                offers.append(Offer(name, False, serves.reason))
                continue
        backend = backends.get_backend(name)
        avail = backend.available()
        if not avail:
            offers.append(Offer(name, False, f"cannot run here: {avail.reason}"))
            continue
        if gguf:
            serves = backend.serves_on(hw)
        offers.append(Offer(name, serves.ok, serves.reason or avail.reason))
    return offers


def offered(offers: list[Offer]) -> set[str]:
    return {o.backend for o in offers if o.offered}


def uniform_plans(spec: ModelSpec, requested: str, offers: list[Offer],
                  group_size: int = formats.DEFAULT_GROUP_SIZE) -> list[QuantPlan]:
    """Every offered scheme written uniformly on the decoder's linears: one writer per scheme
    under `auto` (auto_writers()), each scheme of the backend otherwise."""
    ok = offered(offers)
    pairs = ([(s, w) for s, w in auto_writers().items() if w in ok] if requested == "auto" else
             [(s, requested) for s in backends.registry.schemes_of(requested) if requested in ok])
    return [plan_for_format(spec, scheme, group_size=group_size, backend=writer)
            for scheme, writer in pairs]


def int_writer(requested: str, offers: list[Offer]) -> str | None:
    """The backend that writes the searched int4/int8/float mixes, or None when none is
    offered."""
    ok = offered(offers)
    mixers = backends.registry.int_mix_writers()
    if requested == "auto":
        int4 = auto_writers().get(formats.Scheme.W4A16.value)
        return int4 if int4 in ok and int4 in mixers else next((w for w in mixers if w in ok),
                                                                None)
    return requested if requested in mixers and requested in ok else None


def hf_candidates(spec: ModelSpec, requested: str, offers: list[Offer], hw: HardwareProfile,
                  wl: Any, max_size: int | None, limits: list[tuple[str, int]],
                  search: Callable[[HfPlanSpace, int], list[Candidate]],
                  group_size: int = formats.DEFAULT_GROUP_SIZE
                  ) -> tuple[list[Candidate], dict[str, Any]]:
    """The HF candidates that are predicted to fit, and a summary for the report.
    `search(space, budget)` runs the study on the int mix and returns its candidates (the
    pipeline's Optuna study; not called when no int writer is offered or no size/memory budget
    binds: then the uniform schemes are the candidates)."""
    from advisor.estimate import estimate
    from advisor.space.hf_mix import hf_plan_space

    out: list[Candidate] = []
    info: dict[str, Any] = {"uniform": []}
    for plan in uniform_plans(spec, requested, offers, group_size):
        est = estimate(spec, plan, hw, wl)
        fits = fits_targets(est, max_size, limits)
        info["uniform"].append({"label": plan.label, "backend": plan.backend, "fits": fits,
                                "size_predicted": int(est.file_size.value),
                                "memory_predicted": est.total_memory.value})
        if fits:
            out.append(Candidate(plan.label, "checkpoint", plan))
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
    seen = {c.plan.digest() for c in out}
    for c in search(space, budget):
        if c.plan.digest() not in seen:
            seen.add(c.plan.digest())
            out.append(c)
    return out, info
