"""GGML tensor types: block layout, exact byte counts, and llama.cpp's shape fallback.

The table comes from gguf-py (`gguf.constants.GGML_QUANT_SIZES`, `GGMLQuantizationType`), corrected
and completed from the C structs of the llama.cpp that llama-cpp-python 0.3.36 vendors
(`ggml/src/ggml-common.h`, `sizeof(block_*)`), because that C is what writes the files.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from types import MappingProxyType

from gguf.constants import GGML_QUANT_SIZES

from advisor.errors import BadInput

# GGUF files pad every tensor's data to this many bytes (GGUF_DEFAULT_ALIGNMENT in gguf.h) unless
# the file sets general.alignment.
GGUF_ALIGNMENT = 32
GGUF_ALL = "gguf:*"
"""A runtime's or backend's formats meaning every GGML type and llama.cpp preset."""

# Where gguf-py 0.19.0 disagrees with or lags behind ggml-common.h (name: (type id, block, bytes)):
# - Q8_1 is `{ggml_half2 ds; int8_t qs[32]}` = 36 bytes; gguf-py says 4 + 4 + 32.
# - Q2_0 (GGML_TYPE_Q2_0 = 42, ggml.h) is `{ggml_half d; uint8_t qs[64/4]}` = 18 bytes per 64
#   weights; gguf-py 0.19.0 does not know it yet.
_GGML_COMMON_FIXES: dict[str, tuple[int, int, int]] = {
    "Q8_1": (9, 32, 36),
    "Q2_0": (42, 64, 18),
}

# Quantizers that take an importance matrix when one is given (ggml-quants.c: quantize_q4_0 ...
# branch on `quant_weights`; quantize_q8_0, q1_0, q2_0, mxfp4, nvfp4, tq1_0, tq2_0 ignore it).
_USES_IMATRIX = frozenset(
    {
        "Q4_0", "Q4_1", "Q5_0", "Q5_1",
        "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K",
        "IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S", "IQ4_NL", "IQ4_XS",
    }
)

# Types llama.cpp refuses to write without an importance matrix (llama-quant.cpp
# tensor_requires_imatrix; token_embd/output are exempt, and Q2_K needs one only in a Q2_K_S file).
_REQUIRES_IMATRIX = frozenset({"IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS"})


@dataclass(frozen=True)
class GGMLType:
    """One GGML storage type: `type_size` bytes hold `block_size` consecutive weights of a row."""

    name: str
    type_id: int
    block_size: int
    type_size: int

    @property
    def bits_per_weight(self) -> float:
        return 8.0 * self.type_size / self.block_size

    @property
    def is_quantized(self) -> bool:
        # ggml.c type_traits: .is_quantized is true exactly for the block types.
        return self.block_size > 1

    @property
    def uses_imatrix(self) -> bool:
        return self.name in _USES_IMATRIX

    @property
    def requires_imatrix(self) -> bool:
        return self.name in _REQUIRES_IMATRIX


def _build_table() -> MappingProxyType[str, GGMLType]:
    table = {
        t.name: GGMLType(t.name, int(t.value), blck, size)
        for t, (blck, size) in GGML_QUANT_SIZES.items()
    }
    for name, (type_id, blck, size) in _GGML_COMMON_FIXES.items():
        table[name] = GGMLType(name, type_id, blck, size)
    return MappingProxyType(dict(sorted(table.items(), key=lambda kv: kv[1].type_id)))


GGML_TYPES = _build_table()


def ggml_type_names() -> list[str]:
    """Every GGML type name, in type-id order (F32, F16, Q4_0, ...)."""
    return list(GGML_TYPES)


def is_ggml_type(name: str) -> bool:
    return name.upper() in GGML_TYPES


def ggml_type(name: str) -> GGMLType:
    """The type named `name` (case-insensitive); BadInput listing the known ones otherwise."""
    t = GGML_TYPES.get(name.upper())
    if t is None:
        raise BadInput(
            f"unknown GGML type {name!r}", f"use one of {', '.join(GGML_TYPES)}"
        )
    return t


def type_from_id(type_id: int) -> GGMLType:
    for t in GGML_TYPES.values():
        if t.type_id == type_id:
            return t
    raise BadInput(f"unknown GGML type id {type_id}", "the file was written by a newer llama.cpp")


def fits(type_name: str, row_size: int) -> bool:
    """Whether rows of `row_size` weights (GGUF ne[0]) split into whole blocks of this type."""
    return row_size % ggml_type(type_name).block_size == 0


def row_bytes(type_name: str, row_size: int) -> int:
    """Bytes of one row: ggml_row_size() in ggml.c (type_size * ne / blck_size)."""
    t = ggml_type(type_name)
    if row_size % t.block_size:
        raise BadInput(
            f"a row of {row_size} weights does not split into {t.name} blocks of {t.block_size}",
            f"use formats.fallback({t.name!r}, {row_size}) for the type llama.cpp would write",
        )
    return t.type_size * row_size // t.block_size


def tensor_bytes(type_name: str, shape: Sequence[int]) -> int:
    """Bytes llama.cpp stores for a tensor of `shape` (PyTorch order, row size last), unpadded.

    This is ggml_nbytes() of a contiguous tensor: rows x ggml_row_size(type, ne[0]); GGUF pads
    each tensor's data to the file alignment on top of it (see `padded`).
    """
    if not shape:
        raise BadInput("a tensor shape cannot be empty", "give at least one dimension")
    if any(int(d) <= 0 for d in shape):
        return 0  # ggml_nbytes returns 0 for an empty tensor
    n_rows = math.prod(int(d) for d in shape[:-1])
    return n_rows * row_bytes(type_name, int(shape[-1]))


def padded(nbytes: int, alignment: int = GGUF_ALIGNMENT) -> int:
    """GGML_PAD(nbytes, alignment): what a tensor's data takes in a GGUF file."""
    return (nbytes + alignment - 1) // alignment * alignment


def fallback(type_name: str, row_size: int) -> str:
    """The type llama.cpp writes when `type_name` does not fit rows of `row_size` weights.

    Port of tensor_type_fallback(), src/llama-quant.cpp l. 390-443 (llama-cpp-python 0.3.36):
    256-blocks demote to a 32-block type of similar size; if even that does not divide the row,
    F16. A type that fits is returned unchanged.
    """
    t = ggml_type(type_name)
    if row_size % t.block_size == 0:
        return t.name
    if t.name in ("IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S", "IQ4_XS"):
        target = "IQ4_NL"
    elif t.name in ("Q2_0", "Q2_K", "Q3_K", "TQ1_0", "TQ2_0"):
        target = "Q4_0"
    elif t.name == "Q4_K":
        target = "Q5_0"
    elif t.name == "Q5_K":
        target = "Q5_1"
    elif t.name == "Q6_K":
        target = "Q8_0"
    elif t.block_size <= 32:
        # "the target is already a 32-block type, so there is no smaller block to demote to"
        target = t.name
    else:
        # llama.cpp throws "no tensor type fallback is defined for type %s" (Q1_0, NVFP4, Q8_K ...)
        raise BadInput(
            f"llama.cpp defines no fallback for {t.name} on rows of {row_size} weights",
            f"rows must be a multiple of {t.block_size}; pick another type for this tensor",
        )
    if row_size % GGML_TYPES[target].block_size:
        return "F16"  # "must use F16 due to unusual shape"
    return target
