"""From a format name to a per-tensor plan (the plan space grows here with the search)."""

from __future__ import annotations

import backends
from advisor import formats
from advisor.errors import BadInput
from advisor.modelspec import LINEAR_ROLES, ModelSpec, Role
from advisor.plan import QuantPlan

# User-facing shorthands for the HF/GPU schemes.
SCHEME_ALIASES = {
    "int4": "W4A16",
    "int8": "W8A16",
    "w4a16": "W4A16",
    "w8a16": "W8A16",
    "w8a8": "W8A8-INT8",
    "w8a8-int8": "W8A8-INT8",
    "int8-w8a8": "W8A8-INT8",
    "fp8": "W8A8-FP8",
    "w8a8-fp8": "W8A8-FP8",
    "nf4": "NF4",
}
QUANT_SCHEMES = formats.QUANT_SCHEMES
GROUPED_SCHEMES = formats.GROUPED_SCHEMES
GROUP_SIZES = formats.GROUP_SIZES  # -1: one scale per output channel


def canonical_format(fmt: str) -> str:
    """'q4_k_m' -> 'Q4_K_M', 'int4' -> 'W4A16'; unknown names raise BadInput listing known ones."""
    low = fmt.strip().lower()
    if low in SCHEME_ALIASES:
        return SCHEME_ALIASES[low]
    up = fmt.strip().upper()
    if up in QUANT_SCHEMES or formats.is_preset(up) or formats.is_ggml_type(up):
        return up
    raise BadInput(
        f"unknown format {fmt!r}",
        "use a llama.cpp preset or type (Q2_K ... Q8_0, Q4_K_M, F16), or one of "
        f"{', '.join(QUANT_SCHEMES)} (aliases: int4, int8, fp8, nf4, w8a8)",
    )


def _uniform_ggml(spec: ModelSpec, gtype: str) -> dict[str, str]:
    out = {}
    for t in spec.tensors:
        if t.role in (Role.NORM, Role.OTHER) or len(t.shape) < 2:
            out[t.canonical] = "F32"
        else:
            out[t.canonical] = formats.fallback(gtype, t.row_size)
    return out


def _hf_scheme(spec: ModelSpec, scheme: str) -> dict[str, str]:
    # Embeddings and LM head stay unquantized by default; norms keep 16-bit storage.
    return {t.canonical: scheme if t.role in LINEAR_ROLES else "F16" for t in spec.tensors}


def plan_for_format(spec: ModelSpec, fmt: str, group_size: int = formats.DEFAULT_GROUP_SIZE,
                    imatrix: bool = False, backend: str | None = None) -> QuantPlan:
    """The plan a format name stands for: a llama.cpp preset's per-tensor rules, one GGML type
    for every weight matrix, or an HF scheme on the linear layers. `imatrix`: some presets pick
    other types when an importance matrix is used (llama.cpp's rules read `qs.has_imatrix`)."""
    name = canonical_format(fmt)
    if formats.is_preset(name):
        return QuantPlan("gguf", formats.preset_plan(spec, name, imatrix=imatrix), label=name)
    if formats.is_ggml_type(name):
        return QuantPlan("gguf", _uniform_ggml(spec, name), label=name)
    if group_size not in GROUP_SIZES:
        raise BadInput(
            f"group size {group_size} is not supported",
            f"use one of {', '.join(map(str, GROUP_SIZES))} (-1 = per channel)",
        )
    options = {"group_size": group_size} if name in GROUPED_SCHEMES else {}
    label = f"{name}-g{group_size}" if options else name
    default = backends.registry.default_writer(name)
    chosen = backend or default
    if chosen is None:
        raise BadInput(f"no backend writes {name}",
                       f"known backends: {', '.join(backends.names())}")
    writes = backends.registry.schemes_of(chosen)
    if name not in writes:
        raise BadInput(f"backend {chosen} does not write {name}",
                       f"{chosen} writes {', '.join(writes) or 'GGUF files (llama.cpp types)'}")
    if backend and backend != default:
        label = f"{backend}-{label}"
    return QuantPlan(chosen, _hf_scheme(spec, name), options=options, label=label)
