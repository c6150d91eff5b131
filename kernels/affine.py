"""Group-wise affine integer quantization (the W4A16/W8A16 family) and its int32 packing.

Conventions are compressed-tensors' (quantization/utils/helpers.py `calculate_qparams` and
lifecycle/forward.py `quantize`/`dequantize`), so a weight quantized here is stored by its
`pack-quantized` compressor without moving a single integer:

- integers are signed: [-2^(b-1), 2^(b-1) - 1] (int4: -8..7), held in int8;
- q = clamp(round(w / scale + zp), qmin, qmax), w' = (q - zp) * scale;
- symmetric: zp = 0, scale = absmax / ((qmax - qmin) / 2) (int4: absmax / 7.5);
- asymmetric: the range always holds 0; scale = (max - min) / (qmax - qmin),
  zp = clamp(round(qmin - min / scale)).
- scales are rounded to the checkpoint's 16-bit dtype *before* the integers are computed, so the
  stored (q, scale) pair dequantizes to exactly what was optimised.

`group_size` -1 is one scale per output channel. Shapes are PyTorch's (out, in): groups run along
the input dimension, as vLLM's kernels read them. Pure: tensors in, tensors out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

EPS = 1e-12  # smallest scale: an all-zero group quantizes to zeros instead of NaN


@dataclass(frozen=True)
class IntSpec:
    """One integer weight format: bits, group size (-1 = per channel), symmetry."""

    bits: int = 4
    group_size: int = 128
    symmetric: bool = True

    def __post_init__(self) -> None:
        if self.bits not in (2, 3, 4, 8):
            raise ValueError(f"IntSpec.bits={self.bits!r}; expected one of 2, 3, 4, 8")
        if self.group_size != -1 and self.group_size <= 0:
            raise ValueError(f"IntSpec.group_size={self.group_size!r}; expected > 0 or -1")

    @property
    def qmin(self) -> int:
        return -(1 << (self.bits - 1))

    @property
    def qmax(self) -> int:
        return (1 << (self.bits - 1)) - 1

    def groups(self, in_features: int) -> int:
        """Groups per row; a group size that does not divide the row is not supported."""
        if self.group_size == -1:
            return 1
        if in_features % self.group_size:
            raise ValueError(f"group size {self.group_size} does not divide in_features "
                             f"{in_features}")
        return in_features // self.group_size

    def width(self, in_features: int) -> int:
        return in_features if self.group_size == -1 else self.group_size


def qparams(w: torch.Tensor, spec: IntSpec,
            scale_dtype: torch.dtype = torch.float16) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, zero point) of `w` [out, in]: float32 scales [out, groups] (values exactly
    representable in `scale_dtype`) and int8 zero points [out, groups]."""
    out_f, in_f = w.shape
    g = spec.groups(in_f)
    x = w.detach().float().reshape(out_f, g, -1)
    return qparams_from_range(x.amin(-1), x.amax(-1), spec, scale_dtype)


def qparams_from_range(lo: torch.Tensor, hi: torch.Tensor, spec: IntSpec,
                       scale_dtype: torch.dtype = torch.float16
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and zero point of the ranges [lo, hi] (any shape), compressed-tensors' rules."""
    lo = torch.clamp(lo.float(), max=0.0)
    hi = torch.clamp(hi.float(), min=0.0)
    span = spec.qmax - spec.qmin
    if spec.symmetric:
        scale = torch.maximum(lo.abs(), hi) / (span / 2)
    else:
        scale = (hi - lo) / span
    scale = _storable(torch.clamp(scale, min=EPS), scale_dtype)
    if spec.symmetric:
        zp = torch.zeros_like(scale, dtype=torch.int8)
    else:
        zp = torch.clamp(torch.round(spec.qmin - lo / scale), spec.qmin, spec.qmax)
        zp = zp.to(torch.int8)
    return scale, zp


def _storable(scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Round to `dtype` and back, keeping the value positive (fp16 underflows below 6e-8)."""
    tiny = torch.finfo(dtype).tiny
    return torch.clamp(scale, min=tiny).to(dtype).float()


def _expand(t: torch.Tensor, in_features: int) -> torch.Tensor:
    """[out, groups] -> [out, in] by repeating each group's value along its columns."""
    return t.repeat_interleave(in_features // t.shape[1], dim=1)


def quantize(w: torch.Tensor, scale: torch.Tensor, zp: torch.Tensor, spec: IntSpec) -> torch.Tensor:
    """int8 integers of `w` [out, in] for per-group `scale`/`zp` [out, groups]."""
    in_f = w.shape[1]
    s = _expand(scale.float(), in_f)
    z = _expand(zp.float(), in_f)
    q = torch.clamp(torch.round(w.float() / s + z), spec.qmin, spec.qmax)
    return q.to(torch.int8)


def dequantize(q: torch.Tensor, scale: torch.Tensor, zp: torch.Tensor) -> torch.Tensor:
    """float32 weights of integers `q` [out, in]."""
    in_f = q.shape[1]
    return (q.float() - _expand(zp.float(), in_f)) * _expand(scale.float(), in_f)


def fake_quantize(w: torch.Tensor, spec: IntSpec,
                  scale_dtype: torch.dtype = torch.float16) -> torch.Tensor:
    """Round-to-nearest: `w` quantized and dequantized with its own min/max qparams."""
    scale, zp = qparams(w, spec, scale_dtype)
    return dequantize(quantize(w, scale, zp, spec), scale, zp)


def quantize_column(w: torch.Tensor, scale: torch.Tensor, zp: torch.Tensor,
                    spec: IntSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """One input column w [out] with its group's scale/zp [out]: (int8 q, dequantized)."""
    q = torch.clamp(torch.round(w / scale + zp.float()), spec.qmin, spec.qmax)
    return q.to(torch.int8), (q - zp.float()) * scale


def pack_int32(q: torch.Tensor, bits: int) -> torch.Tensor:
    """Dense packing of signed `bits`-bit integers [rows, cols] into int32 [rows,
    ceil(cols * bits / 32)]: element i of a row occupies bits i*bits.. of the row's bit stream,
    offset by 2^(bits-1) to unsigned (compressed-tensors `pack_to_int32`, packed_dim=1)."""
    if q.dtype != torch.int8:
        raise ValueError(f"pack_int32 takes int8 integers; got {q.dtype}")
    rows, cols = q.shape
    u = (q.to(torch.int64) + (1 << (bits - 1))) & ((1 << bits) - 1)
    pad = math.ceil(cols / 32) * 32 - cols
    u = torch.nn.functional.pad(u, (0, pad))
    n_words = math.ceil(cols * bits / 32)
    start = torch.arange(u.shape[1], dtype=torch.int64) * bits
    word = start // 32
    off = start % 32
    acc = torch.zeros(rows, u.shape[1] * bits // 32 + 1, dtype=torch.int64)
    acc.index_add_(1, word, (u << off) & 0xFFFFFFFF)
    spill = off + bits > 32  # an element split across two words
    if spill.any():
        acc.index_add_(1, word[spill] + 1, u[:, spill] >> (32 - off[spill]))
    words = acc[:, :n_words] & 0xFFFFFFFF
    return torch.where(words >= 1 << 31, words - (1 << 32), words).to(torch.int32)


def unpack_int32(packed: torch.Tensor, bits: int, cols: int) -> torch.Tensor:
    """Inverse of `pack_int32`: int8 integers [rows, cols]."""
    p = packed.to(torch.int64) & 0xFFFFFFFF
    start = torch.arange(cols, dtype=torch.int64) * bits
    word = start // 32
    off = start % 32
    lo = p[:, word] >> off
    hi_word = torch.clamp(word + 1, max=p.shape[1] - 1)
    hi = torch.where(off + bits > 32, p[:, hi_word] << (32 - off), torch.zeros_like(lo))
    u = (lo | hi) & ((1 << bits) - 1)
    return (u - (1 << (bits - 1))).to(torch.int8)


def fake_quantize_reference(w: torch.Tensor, spec: IntSpec,
                            scale_dtype: torch.dtype = torch.float16) -> torch.Tensor:
    """Plain-loop reference of `fake_quantize`: one group, one element at a time (float32
    scalars, as the vectorised path computes)."""
    out = torch.empty(w.shape, dtype=torch.float32)
    width = spec.width(w.shape[1])
    half = torch.tensor((spec.qmax - spec.qmin) / 2, dtype=torch.float32)
    span = torch.tensor(float(spec.qmax - spec.qmin), dtype=torch.float32)
    tiny = torch.finfo(scale_dtype).tiny
    for r in range(w.shape[0]):
        for c0 in range(0, w.shape[1], width):
            g = w[r, c0:c0 + width].float()
            lo = torch.clamp(g.min(), max=0.0)
            hi = torch.clamp(g.max(), min=0.0)
            s = torch.maximum(lo.abs(), hi) / half if spec.symmetric else (hi - lo) / span
            s = s.clamp(min=EPS).clamp(min=tiny).to(scale_dtype).float()
            z = torch.tensor(0.0) if spec.symmetric else \
                torch.round(spec.qmin - lo / s).clamp(spec.qmin, spec.qmax)
            for c in range(c0, c0 + width):
                q = torch.round(g[c - c0] / s + z).clamp(spec.qmin, spec.qmax)
                out[r, c] = (q - z) * s
    return out
