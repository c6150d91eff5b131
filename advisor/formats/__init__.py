"""Byte-exact knowledge of quantized formats: GGML types, llama.cpp presets, HF/GPU schemes.

Pure functions of names and shapes (no file I/O). Shapes are in PyTorch order, row size last.
One entry point, `tensor_bytes(fmt, shape, **opts)`, takes a GGML type name (Q4_K, IQ4_NL,
F16, ...) or an HF scheme name (W4A16, W8A16, W8A8-INT8, W8A8-FP8, NF4, F16, BF16, F32);
F16/BF16/F32 mean the same bytes in both worlds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from advisor.errors import BadInput
from advisor.formats.ggml import (
    GGML_TYPES,
    GGUF_ALIGNMENT,
    GGMLType,
    fallback,
    fits,
    ggml_type,
    ggml_type_names,
    is_ggml_type,
    padded,
    row_bytes,
)
from advisor.formats.ggml import tensor_bytes as ggml_tensor_bytes
from advisor.formats.presets import (
    Preset,
    is_preset,
    preset,
    preset_names,
    preset_plan,
    requires_imatrix,
)
from advisor.formats.schemes import (
    DEFAULT_GROUP_SIZE,
    GROUP_SIZES,
    GROUPED_SCHEMES,
    HF_SCHEMES,
    QUANT_SCHEMES,
    WEIGHT_BITS,
    Scheme,
    hf_scheme_names,
    hf_tensor_bytes,
    is_hf_scheme,
)

# Keywords hf_tensor_bytes understands; a GGML type has no options and ignores these (callers
# pass a plan's group size whatever the format), anything else is a typo.
_HF_OPTS = frozenset({"group_size", "symmetric", "scale_bytes", "fp8_per_tensor", "double_quant"})


def tensor_bytes(fmt: str, shape: Sequence[int], **opts: Any) -> int:
    """Bytes a tensor of `shape` takes in format `fmt` (scales, zero points and packing included).

    GGML types: exactly what llama.cpp stores (ggml_nbytes, before the file's 32-byte padding);
    raises BadInput when the row does not split into the type's blocks (see `fallback`).
    HF schemes: see advisor.formats.schemes; `opts` go to hf_tensor_bytes.
    """
    unknown = set(opts) - _HF_OPTS
    if unknown:
        raise TypeError(f"tensor_bytes() got unknown options {sorted(unknown)}; "
                        f"expected some of {sorted(_HF_OPTS)}")
    if is_ggml_type(fmt):
        return ggml_tensor_bytes(fmt, shape)
    if is_hf_scheme(fmt):
        return hf_tensor_bytes(fmt, shape, **opts)
    raise BadInput(
        f"unknown tensor format {fmt!r}",
        f"use a GGML type ({', '.join(ggml_type_names())}) or an HF scheme "
        f"({', '.join(HF_SCHEMES)})",
    )


__all__ = [
    "DEFAULT_GROUP_SIZE", "GGML_TYPES", "GGUF_ALIGNMENT", "GROUPED_SCHEMES", "GROUP_SIZES",
    "HF_SCHEMES", "QUANT_SCHEMES", "Scheme", "WEIGHT_BITS", "GGMLType", "Preset",
    "fallback", "fits", "ggml_tensor_bytes", "ggml_type", "ggml_type_names", "hf_scheme_names",
    "hf_tensor_bytes", "is_ggml_type", "is_hf_scheme", "is_preset", "padded", "preset",
    "preset_names", "preset_plan", "requires_imatrix", "row_bytes", "tensor_bytes",
]
