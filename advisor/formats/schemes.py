"""Bytes of a weight tensor in the HF/GPU formats, as their libraries store them.

- W4A16 / W8A16: compressed-tensors `pack_quantized` (compressors/quantized_compressors/
  pack_quantized.py): `weight_packed` int32 [out, ceil(in / (32 // bits))], `weight_scale`
  [out, n_groups] in the model's 16-bit dtype, for asymmetric schemes `weight_zero_point` int32
  packed along the output dim [ceil(out / (32 // bits)), n_groups], and `weight_shape`
  (torch.tensor(weight.shape): two int64).
- W8A8-INT8: compressed-tensors `int_quantized`: int8 weights, one 16-bit scale per output channel.
- W8A8-FP8: float8_e4m3fn weights and an fp32 scale per output channel (or one per tensor).
- NF4: bitsandbytes Params4bit + QuantState.as_dict(packed=True): two weights a byte, an absmax
  per block of 64; with double quantization (bnb_4bit_use_double_quant) the absmax are uint8
  blockwise-quantized in blocks of 256 with an fp32 absmax each and a 256-entry fp32 code;
  plus the 16-entry fp32 NF4 code. The packed JSON state tensor (~150-200 bytes, its length
  depends on the data) is not counted.
- F16 / BF16 / F32: unquantized.

A 3-D shape (experts, out, in) is that many separate matrices, as the libraries quantize them.
A row that the planned group size does not divide is written with the largest smaller group
size that does (`group_for`), as the HF backends write it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from enum import Enum

from advisor.errors import BadInput


class Scheme(str, Enum):
    """The quantization schemes of HF checkpoints (what a user names with `--preset`); the one
    list every other table of schemes is read from."""

    W4A16 = "W4A16"
    """4-bit integer weights in groups, 16-bit activations (compressed-tensors pack_quantized)."""
    W8A16 = "W8A16"
    """8-bit integer weights in groups, 16-bit activations (compressed-tensors pack_quantized)."""
    W8A8_INT8 = "W8A8-INT8"
    """int8 weights per output channel and dynamic per-token int8 activations (SmoothQuant)."""
    W8A8_FP8 = "W8A8-FP8"
    """float8_e4m3fn weights per output channel and dynamic FP8 activations."""
    NF4 = "NF4"
    """bitsandbytes 4-bit NormalFloat weights in blocks of 64, double-quantized absmax."""


QUANT_SCHEMES = tuple(s.value for s in Scheme)
"""Every quantized HF scheme, in the order runtimes and reports list them."""
FLOAT_FORMATS = ("F16", "BF16", "F32")
HF_SCHEMES = (*QUANT_SCHEMES, *FLOAT_FORMATS)
"""Every per-tensor format of an HF plan: a quantized scheme or a float kept as is."""
GROUPED_SCHEMES = (Scheme.W4A16.value, Scheme.W8A16.value)
WEIGHT_BITS = {Scheme.W4A16.value: 4, Scheme.W8A16.value: 8, Scheme.W8A8_INT8.value: 8,
               Scheme.W8A8_FP8.value: 8, Scheme.NF4.value: 4}
"""Bits a weight of each scheme takes (scales aside): `quantize --backend B --bits N`."""
GROUP_SIZES = (32, 64, 128, -1)  # -1: one scale per output channel
DEFAULT_GROUP_SIZE = 128

_BITS = {"W4A16": 4, "W8A16": 8}
_FLOAT_BYTES = {"F16": 2, "BF16": 2, "F32": 4}
_WEIGHT_SHAPE_BYTES = 2 * 8  # compressed-tensors weight_shape: torch.tensor(torch.Size) is int64
_NF4_BLOCK = 64  # bitsandbytes Linear4bit / Params4bit default blocksize
_NF4_NESTED_BLOCK = 256  # quantize_4bit(compress_statistics=True) -> quantize_blockwise(256)
_NF4_CODE_BYTES = 16 * 4  # quant_map: the 16 NF4 levels, fp32
_NF4_NESTED_CODE_BYTES = 256 * 4  # nested_quant_map: the dynamic 8-bit code, fp32


def hf_scheme_names() -> list[str]:
    return list(HF_SCHEMES)


def is_hf_scheme(name: str) -> bool:
    return name.upper() in HF_SCHEMES


def _matrices(scheme: str, shape: Sequence[int]) -> tuple[int, int, int]:
    """(number of matrices, out, in) of a weight in PyTorch order."""
    dims = [int(d) for d in shape]
    if len(dims) < 2 or any(d <= 0 for d in dims):
        raise BadInput(
            f"{scheme} quantizes weight matrices; got shape {tuple(dims)}",
            "keep 1-D tensors (norms, biases) in F16/BF16/F32",
        )
    return math.prod(dims[:-2]), dims[-2], dims[-1]


def group_for(cols: int, group_size: int) -> int:
    """The group size a row of `cols` inputs is written with: the planned one when it divides
    the row, else the largest of GROUP_SIZES below it that does (576-wide rows at 128 take 64),
    else -1, one scale per output channel. vLLM's grouped kernels need whole groups."""
    if group_size == -1 or cols % group_size == 0:
        return group_size
    for g in sorted(GROUP_SIZES, reverse=True):
        if 0 < g < group_size and cols % g == 0:
            return g
    return -1


def _n_groups(scheme: str, cols: int, group_size: int) -> int:
    if group_size != -1 and group_size <= 0:
        raise BadInput(
            f"{scheme} group size {group_size} is not valid",
            f"use one of {', '.join(map(str, GROUP_SIZES))} (-1 = per output channel)",
        )
    g = group_for(cols, group_size)
    return 1 if g == -1 else cols // g


def hf_tensor_bytes(
    scheme: str,
    shape: Sequence[int],
    group_size: int = DEFAULT_GROUP_SIZE,
    *,
    symmetric: bool = True,
    scale_bytes: int = 2,
    fp8_per_tensor: bool = False,
    double_quant: bool = True,
) -> int:
    """Bytes of a tensor of `shape` (PyTorch order, in-features last) stored in `scheme`.

    `group_size` applies to W4A16/W8A16 only (others ignore it); `symmetric=False` adds packed
    zero points (W4A16/W8A16) or int8 ones (W8A8-INT8); `scale_bytes` is the 16-bit scale dtype of
    the int schemes; `fp8_per_tensor` gives FP8 one fp32 scale instead of one per output channel;
    `double_quant` is bitsandbytes' bnb_4bit_use_double_quant for NF4.
    """
    s = scheme.upper()
    if s in _FLOAT_BYTES:
        return math.prod(int(d) for d in shape) * _FLOAT_BYTES[s]
    if s in _BITS:
        n, rows, cols = _matrices(s, shape)
        pack = 32 // _BITS[s]
        groups = _n_groups(s, cols, group_size)
        per = rows * math.ceil(cols / pack) * 4 + rows * groups * scale_bytes + _WEIGHT_SHAPE_BYTES
        if not symmetric:
            per += math.ceil(rows / pack) * groups * 4
        return n * per
    if s == "W8A8-INT8":
        n, rows, cols = _matrices(s, shape)
        per = rows * cols + rows * scale_bytes + (0 if symmetric else rows)
        return n * per
    if s == "W8A8-FP8":
        n, rows, cols = _matrices(s, shape)
        return n * (rows * cols + (1 if fp8_per_tensor else rows) * 4)
    if s == "NF4":
        n, rows, cols = _matrices(s, shape)
        numel = rows * cols
        blocks = math.ceil(numel / _NF4_BLOCK)
        per = (numel + 1) // 2 + _NF4_CODE_BYTES
        if double_quant:
            per += blocks + math.ceil(blocks / _NF4_NESTED_BLOCK) * 4 + _NF4_NESTED_CODE_BYTES
        else:
            per += blocks * 4
        return n * per
    raise BadInput(f"unknown HF scheme {scheme!r}", f"use one of {', '.join(HF_SCHEMES)}")


# safetensors headers: a JSON entry per stored tensor ('"model.layers.7.mlp.up_proj.weight_packed":
# {"dtype":"I32","shape":[1536,72],"data_offsets":[..,..]},'), 106-113 bytes measured on the tiny
# test model and SmolLM2-135M checkpoints (rtn, fp8, smoothquant, nf4); 120 keeps the prediction
# on the safe side for longer names and offsets. Plus per shard the 8-byte length and metadata.
HEADER_BYTES_PER_ENTRY = 120
SHARD_HEADER_BYTES = 48
_ENTRIES = {"W4A16": 3, "W8A16": 3, "W8A8-INT8": 2, "W8A8-FP8": 2, "NF4": 6}


def stored_entries(scheme: str, symmetric: bool = True) -> int:
    """Tensors a checkpoint stores for one weight in `scheme`: the packed int weight, its scale
    and shape (and zero point when asymmetric); the FP8/INT8 weight and scale; bitsandbytes'
    weight, absmax, quant_map, nested absmax and code, quant_state; a float tensor itself."""
    s = scheme.upper()
    n = _ENTRIES.get(s, 1)
    return n + (1 if s in _BITS and not symmetric else 0)
