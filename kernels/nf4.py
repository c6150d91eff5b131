"""NF4 (4-bit NormalFloat) weights with double-quantized block scales, as bitsandbytes stores them.

Conventions are bitsandbytes 0.50's (functional.py `quantize_4bit(..., quant_type="nf4",
blocksize=64, compress_statistics=True)`), reproduced bit for bit on the CPU so that a checkpoint
written here is the one `Linear4bit` would write:

- the weight is flattened (row-major) and cut into blocks of 64 values; the last block may be
  partial (a block may span two rows when a row is not a multiple of 64);
- absmax = max |w| of the block (float32); w / absmax is rounded to the nearest of the 16 NF4
  levels, a midpoint going to the lower level (backends/default/ops.py: `bucketize` against the
  level midpoints; full blocks multiply by 1/absmax, the partial block divides);
- an all-zero block has absmax 0 (1e-38 when it is the partial last block: bitsandbytes stores
  the clamped value there) and every code 7 (the level 0.0);
- two codes a byte, the first element in the high nibble; an odd count pads one 0.0 code;
  stored as uint8 [ceil(numel / 2), 1];
- double quantization (`compress_statistics`): offset = mean(absmax); absmax - offset is
  quantized blockwise (256 values a block) to bitsandbytes' signed 8-bit dynamic code, with one
  float32 absmax per 256-block. The CPU quantizer of libbitsandbytes (csrc/cpu_ops.cpp
  `quantize_cpu_impl`) does not search the code exactly: it maps v in [-1, 1] to one of 65,536
  bins, ((v + 1) * 0.5) * 65535 + 0.5 truncated, and takes the code nearest each bin's left
  edge. Reproduced here (same float32 steps), it differs from an exact nearest search only by
  up to one bin (2 / 65535 of the block's absmax); an all-zero 256-block gets codes 0. (The
  CUDA kernels search differently; the format, and every reader of it, is the same.)
- dequantization: absmax = code8[q] * nested_absmax + offset; w' = NF4[code] * absmax, all in
  float32, then cast to the requested dtype.

Pure: tensors in, tensors out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

BLOCKSIZE = 64  # bitsandbytes Params4bit / quantize_4bit default
NESTED_BLOCKSIZE = 256  # quantize_4bit(compress_statistics=True) -> quantize_blockwise(256)
# bitsandbytes functional.get_4bit_type("nf4"): create_normal_map(0.9677083), hard-coded there.
NF4_LEVELS = (
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
)
ZERO_CODE = 7  # NF4_LEVELS[7] == 0.0
_LUT_BINS = 65536  # libbitsandbytes kLUTSize


def nf4_code() -> torch.Tensor:
    """The 16 NF4 levels, float32 (the checkpoint's `weight.quant_map`)."""
    return torch.tensor(NF4_LEVELS, dtype=torch.float32)


def dynamic_code() -> torch.Tensor:
    """bitsandbytes' signed 8-bit dynamic code (`create_dynamic_map()`, the checkpoint's
    `weight.nested_quant_map`): 256 sorted float32 values in [-0.993, 1], built with the same
    float32 steps so the values agree to the bit."""
    data: list[float] = []
    for i in range(7):  # max_exponent_bits=7, total_bits=8, signed
        bounds = torch.linspace(0.1, 1, 2 ** i + 1, dtype=torch.float32)
        means = (bounds[:-1] + bounds[1:]) / 2.0
        scale = 10 ** (-6 + i)
        data += (scale * means).tolist()
        data += (-scale * means).tolist()
    data += [0.0, 1.0]
    return torch.tensor(sorted(data), dtype=torch.float32)


@dataclass(frozen=True)
class NestedAbsmax:
    """Double-quantized block scales: the uint8 codes live in `Nf4Weight.absmax`."""

    absmax: torch.Tensor  # float32 [ceil(blocks / 256)]
    offset: torch.Tensor  # float32 scalar: the mean subtracted before quantizing
    code: torch.Tensor  # float32 [256]: the dynamic code
    blocksize: int = NESTED_BLOCKSIZE


@dataclass(frozen=True)
class Nf4Weight:
    """One weight as bitsandbytes serializes it (Params4bit data + QuantState)."""

    packed: torch.Tensor  # uint8 [ceil(numel / 2), 1]
    absmax: torch.Tensor  # uint8 [blocks] when nested, else float32 [blocks]
    shape: tuple[int, ...]
    dtype: torch.dtype  # the dtype quantized from (QuantState.dtype: the output of dequantize)
    blocksize: int = BLOCKSIZE
    nested: NestedAbsmax | None = None

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def _blocks(flat: torch.Tensor, blocksize: int) -> int:
    return -(-flat.numel() // blocksize)


def nf4_codes(w: torch.Tensor, blocksize: int = BLOCKSIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """(codes uint8 [numel], absmax float32 [blocks]) of `w` (any shape, flattened)."""
    flat = w.detach().reshape(-1).float()
    n = flat.numel()
    rem = n % blocksize
    full = n - rem
    blk = flat[:full].reshape(-1, blocksize)
    absmax = blk.abs().max(dim=-1)[0] if full else torch.empty(0)
    # clamp: an all-zero block scales to 0 (code 7) instead of NaN
    scaled = torch.clamp(blk * (1.0 / absmax.clamp(min=1e-38).view(-1, 1)), -1, 1).reshape(-1)
    if rem:  # the partial block keeps its clamped absmax (1e-38 when all zero), as bnb does
        am = flat[full:].abs().max().clamp(min=1e-38)
        absmax = torch.cat([absmax, am.unsqueeze(0)])
        scaled = torch.cat([scaled, torch.clamp(flat[full:] / am, -1, 1)])
    code = nf4_code()
    mids = (code[:-1] + code[1:]) / 2
    codes = torch.bucketize(scaled, mids, out_int32=True).to(torch.uint8)
    return codes, absmax


def pack_nibbles(codes: torch.Tensor) -> torch.Tensor:
    """4-bit codes [n] -> uint8 [ceil(n / 2), 1], element 2k in the high nibble of byte k; an
    odd count is padded with the 0.0 code (as bitsandbytes pads its scaled values with 0)."""
    c = codes.reshape(-1).to(torch.uint8)
    if c.numel() % 2:
        c = torch.cat([c, torch.tensor([ZERO_CODE], dtype=torch.uint8)])
    return ((c[0::2] << 4) | c[1::2]).unsqueeze(1)


def unpack_nibbles(packed: torch.Tensor, numel: int) -> torch.Tensor:
    """Inverse of `pack_nibbles`: codes uint8 [numel]."""
    p = packed.reshape(-1)
    out = torch.empty(p.numel() * 2, dtype=torch.uint8)
    out[0::2] = p >> 4
    out[1::2] = p & 0xF
    return out[:numel]


def _lookup(code: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
    """The code index libbitsandbytes stores for each of `bins` (`build_quantize_lut`: how many
    code midpoints lie strictly below the bin's left edge), computed for the bins in use only
    (the same float32 steps as the table of 65,536)."""
    mids = 0.5 * (code[:-1] + code[1:])
    edges = -1.0 + (2.0 * bins.float()) / float(_LUT_BINS - 1)
    return torch.searchsorted(mids, edges, side="left")


def quantize_blockwise(x: torch.Tensor, code: torch.Tensor,
                       blocksize: int = NESTED_BLOCKSIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """8-bit blockwise quantization of `x` (flattened) to `code`, as libbitsandbytes' CPU kernel
    does it: (codes uint8 [numel], absmax float32 [blocks])."""
    flat = x.detach().reshape(-1).float()
    n = flat.numel()
    nb = _blocks(flat, blocksize)
    blk = torch.nn.functional.pad(flat, (0, nb * blocksize - n)).view(nb, blocksize)
    absmax = torch.nan_to_num(blk.abs(), nan=0.0).amax(dim=1)
    v = torch.clamp(blk * (1.0 / absmax)[:, None], -1.0, 1.0)
    # separate float32 steps, as the AVX2 kernel computes them: ((v + 1) * 0.5) * 65535 + 0.5
    t = (((v + 1.0) * 0.5) * float(_LUT_BINS - 1)) + 0.5
    idx = torch.nan_to_num(t, nan=0.0).to(torch.int64).clamp(0, _LUT_BINS - 1)
    q = _lookup(code, idx)
    q = torch.where((absmax == 0)[:, None], torch.zeros_like(q), q)
    return q.reshape(-1)[:n].to(torch.uint8), absmax


def dequantize_blockwise(q: torch.Tensor, absmax: torch.Tensor, code: torch.Tensor,
                         blocksize: int = NESTED_BLOCKSIZE) -> torch.Tensor:
    """float32 [numel] of 8-bit codes `q`: code[q] * absmax of the block."""
    flat = q.reshape(-1).long()
    scale = absmax.float().repeat_interleave(blocksize)[:flat.numel()]
    return code.float()[flat] * scale


def double_quantize(absmax: torch.Tensor) -> tuple[torch.Tensor, NestedAbsmax]:
    """bitsandbytes' compress_statistics: (uint8 codes of absmax - mean, the nested state)."""
    offset = absmax.mean()
    code = dynamic_code()
    q, nested = quantize_blockwise(absmax - offset, code, NESTED_BLOCKSIZE)
    return q, NestedAbsmax(nested, offset, code)


def block_absmax(weight: Nf4Weight) -> torch.Tensor:
    """float32 absmax of every 64-block, undoing the double quantization when there is one."""
    if weight.nested is None:
        return weight.absmax.float()
    nest = weight.nested
    return dequantize_blockwise(weight.absmax, nest.absmax, nest.code, nest.blocksize) \
        + nest.offset


def quantize_nf4(w: torch.Tensor, blocksize: int = BLOCKSIZE,
                 double_quant: bool = True) -> Nf4Weight:
    """`w` (any float dtype; its dtype is recorded) as bitsandbytes' NF4 Params4bit."""
    if not w.is_floating_point():
        raise ValueError(f"quantize_nf4 takes a float tensor; got {w.dtype}")
    if w.numel() == 0:
        raise ValueError("quantize_nf4 got an empty tensor")
    codes, absmax = nf4_codes(w, blocksize)
    nested = None
    if double_quant:
        absmax, nested = double_quantize(absmax)
    return Nf4Weight(pack_nibbles(codes), absmax, tuple(w.shape), w.dtype, blocksize, nested)


def dequantize_nf4(weight: Nf4Weight, dtype: torch.dtype | None = None) -> torch.Tensor:
    """The weight's values, float32 products cast to `dtype` (default: the dtype quantized
    from), shaped as the original."""
    codes = unpack_nibbles(weight.packed, weight.numel).long()
    scale = block_absmax(weight).repeat_interleave(weight.blocksize)[:weight.numel]
    out = nf4_code()[codes] * scale
    return out.to(dtype or weight.dtype).reshape(weight.shape)


def fake_quantize_nf4(w: torch.Tensor, blocksize: int = BLOCKSIZE,
                      double_quant: bool = True) -> torch.Tensor:
    """`w` through NF4 and back, float32 (what the runtime multiplies with in float32)."""
    return dequantize_nf4(quantize_nf4(w, blocksize, double_quant), torch.float32)


def nf4_codes_reference(w: torch.Tensor, blocksize: int = BLOCKSIZE
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain-loop reference of `nf4_codes`: one block, one element at a time, comparing with
    the level midpoints in float32 (the first midpoint >= the value names the level)."""
    flat = w.detach().reshape(-1).float()
    code = nf4_code()
    mids = [(code[k] + code[k + 1]) / 2 for k in range(15)]
    codes = torch.empty(flat.numel(), dtype=torch.uint8)
    absmax = []
    for b0 in range(0, flat.numel(), blocksize):
        blk = flat[b0:b0 + blocksize]
        am = blk.abs().max()
        safe = am.clamp(min=1e-38)
        full = blk.numel() == blocksize
        absmax.append(am if full else safe)
        inv = 1.0 / safe
        for k, x in enumerate(blk):
            s = torch.clamp(x * inv if full else x / safe, -1, 1)
            codes[b0 + k] = next((j for j, m in enumerate(mids) if s <= m), 15)
    return codes, torch.stack(absmax)
