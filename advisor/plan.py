"""`QuantPlan`: one format per tensor plus backend options; what the search varies."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = 1
# who writes a GGUF plan: plan option QUANTIZER_KEY, llama.cpp's quantizer by default
# (backends.gguf.backend) or AutoRound's GGUF export (backends.gguf.autoround)
QUANTIZER_KEY = "quantizer"
LLAMA_CPP, AUTOROUND = "llama.cpp", "autoround"
GGUF_QUANTIZERS = (LLAMA_CPP, AUTOROUND)
BOTH = "both"  # recommend --gguf-quantizer both: each GGUF candidate written by both


@dataclass(frozen=True)
class QuantPlan:
    """A backend and the storage format of every tensor (by canonical llama.cpp name).

    Formats are GGML type names (Q4_K, Q8_0, F16, F32, ...) for the gguf backend and scheme names
    (W4A16, W8A16, W8A8-INT8, W8A8-FP8, NF4, F16, BF16) for the HF backends. `label` names where
    the plan came from (a preset such as Q4_K_M, or "search#17").
    """

    backend: str
    tensor_formats: dict[str, str]
    options: dict[str, Any] = field(default_factory=dict)
    label: str = ""
    version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if not self.backend:
            raise ValueError("QuantPlan.backend is empty; expected a registered backend name")
        if not self.tensor_formats:
            raise ValueError("QuantPlan.tensor_formats is empty; expected one format per tensor")

    def digest(self) -> str:
        """Stable hash of what the plan does (label excluded): same plan, same digest."""
        body = json.dumps(
            {"backend": self.backend, "tensors": self.tensor_formats, "options": self.options},
            sort_keys=True,
            separators=(",", ":"),
        )
        return hashlib.sha256(body.encode()).hexdigest()[:16]

    def format_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for f in self.tensor_formats.values():
            counts[f] = counts.get(f, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: -kv[1]))

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "backend": self.backend,
            "label": self.label,
            "digest": self.digest(),
            "options": self.options,
            "tensor_formats": dict(self.tensor_formats),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QuantPlan:
        if d.get("version", SCHEMA_VERSION) != SCHEMA_VERSION:
            raise ValueError(f"QuantPlan version {d.get('version')} != {SCHEMA_VERSION}")
        if not isinstance(d.get("tensor_formats"), dict):
            raise ValueError("QuantPlan.tensor_formats must be an object of name -> format")
        return cls(
            backend=str(d["backend"]),
            tensor_formats={str(k): str(v) for k, v in d["tensor_formats"].items()},
            options=dict(d.get("options", {})),
            label=str(d.get("label", "")),
        )


def gguf_quantizer(plan: QuantPlan) -> str:
    """Who writes this GGUF plan (GGUF_QUANTIZERS)."""
    return str(plan.options.get(QUANTIZER_KEY, LLAMA_CPP))


def written_by(plan: QuantPlan, quantizer: str) -> QuantPlan:
    """The plan with its GGUF writer set."""
    return QuantPlan(plan.backend, plan.tensor_formats, {**plan.options, QUANTIZER_KEY: quantizer},
                     plan.label, plan.version)
