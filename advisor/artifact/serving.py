"""What an artifact's serving files set: the context per request, the parallel slots and the
interpreter of the Python fallback, each decided once here and written the same way into
serve.sh, the Modelfile and the vLLM command.

The context is the model's trained context (`context_length` of the GGUF /
`max_position_embeddings` of config.json), capped so that the predicted memory of the weights,
a KV cache of `parallel` sequences of that length and the runtime's buffers fits the memory the
deployment has: the tightest of `--vram`/`--mem` when given, else the target's device memory.
`--context N` overrides it. It is never below the workload (prompt + new tokens): a context the
benchmark's own requests do not fit would fail the first request (issue 21 saw HTTP 500 with a
40-token context serving a 42-token chat).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from advisor.errors import BadInput
from advisor.estimate import Workload, estimate
from advisor.hardware import HardwareProfile
from advisor.modelspec import ModelSpec
from advisor.plan import QuantPlan

_STEP = 256  # a capped context is rounded down to a multiple of this many tokens


@dataclass(frozen=True)
class Serving:
    """Settings of the serving files (tokens per request, concurrent slots, interpreter)."""

    context: int
    parallel: int = 1
    python: str = sys.executable
    why: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.context, int) or self.context < 1:
            raise BadInput(f"context {self.context!r} tokens", "pass --context of 1 or more")
        if not isinstance(self.parallel, int) or self.parallel < 1:
            raise BadInput(f"concurrency {self.parallel!r}", "pass --concurrency of 1 or more")

    def to_dict(self) -> dict[str, Any]:
        return {"context": self.context, "parallel": self.parallel, "python": self.python,
                "why": self.why}


def _total(spec: ModelSpec, plan: QuantPlan, hw: HardwareProfile, wl: Workload,
           context: int) -> int:
    w = Workload(prompt_tokens=wl.prompt_tokens, new_tokens=wl.new_tokens,
                 concurrency=wl.concurrency, context=context)
    return int(estimate(spec, plan, hw, w).total_memory.value)


def serving_for(spec: ModelSpec, plan: QuantPlan, hw: HardwareProfile, wl: Workload,
                requested: int = 0, memory_limit: int | None = None) -> Serving:
    """The serving settings of `plan` (see the module docstring); `requested`: --context (0 =
    decide), `memory_limit`: the tightest --vram/--mem in bytes (None: the target's memory)."""
    if requested < 0:
        raise BadInput(f"--context {requested}", "pass a positive number of tokens, or 0 to use "
                       "the model's trained context capped by the memory target")
    parallel = wl.concurrency
    if requested:
        return Serving(requested, parallel, why=f"--context {requested}")
    trained, floor = spec.context_length, wl.context_tokens
    if memory_limit is None:
        dev = estimate(spec, plan, hw, wl).device_memory
        memory_limit = int(dev.value) if dev is not None else None
        where = f"{hw.name}'s memory"
    else:
        where = "the memory target"
    if trained <= floor:
        return Serving(floor, parallel, why=f"the workload's {floor} tokens (the model was "
                       f"trained for {trained})")
    if memory_limit is None or _total(spec, plan, hw, wl, trained) <= memory_limit:
        return Serving(trained, parallel, why=f"the model's trained context ({trained} tokens)"
                       + (f", {parallel} parallel sequences" if parallel > 1 else ""))
    if _total(spec, plan, hw, wl, floor) > memory_limit:
        return Serving(floor, parallel, why=f"the workload's {floor} tokens: even these are "
                       f"predicted not to fit {where}")
    lo, hi = floor, trained  # lo fits, hi does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if _total(spec, plan, hw, wl, mid) <= memory_limit else (lo, mid)
    ctx = max(floor, lo // _STEP * _STEP)
    return Serving(ctx, parallel, why=f"the model's trained {trained} tokens capped to fit "
                   f"{where} ({memory_limit / 2**30:.1f} GiB, predicted)")
