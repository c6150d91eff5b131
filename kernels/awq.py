"""AWQ (Lin et al. 2023): activation-aware per-input-channel scales, and weight clipping.

Scale search as in AutoAWQ `quantize/quantizer.py` `_search_best_scale` (duo scaling): for the
linears that read one input (q/k/v after the attention norm, gate/up after the MLP norm, down
after up), s = mean|x|^a / (mean normalised |w|)^(1-a) for a on a grid over [0, 1), normalised
by sqrt(max s * min s); the a whose Q(W diag(s)) diag(s)^-1 reproduces W x best (mean squared
output error over calibration inputs) wins. a = 0 with w_mean 1 is plain round-to-nearest, so
the search never does worse than RTN on its own calibration data.

Clipping as in AutoAWQ `_compute_best_clip`: per output row and group, the range is shrunk to
max|w| * r for r on a grid down to 1 - max_shrink, keeping the r with least output error.
Pure: tensors in, tensors out; applying the scales to the previous operator is the caller's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from kernels.affine import IntSpec, dequantize, fake_quantize, qparams_from_range, quantize

GRID = 20  # exponent grid points, AutoAWQ's n_grid
CLIP_GRID = 20
CLIP_MAX_SHRINK = 0.5


@dataclass(frozen=True)
class AwqScales:
    scales: torch.Tensor  # float32 [in]
    ratio: float  # the exponent a chosen
    errors: list[float]  # output MSE for each grid point (index = grid position)


def _w_mean(weights: list[torch.Tensor], spec: IntSpec) -> torch.Tensor:
    w = torch.cat([x.float() for x in weights], dim=0)
    width = spec.width(w.shape[1])
    g = w.abs().reshape(-1, width)
    g = g / (g.amax(dim=1, keepdim=True) + 1e-6)
    return g.reshape(w.shape).mean(0)


def awq_search_scales(weights: list[torch.Tensor], x: torch.Tensor, spec: IntSpec, *,
                      grid: int = GRID,
                      scale_dtype: torch.dtype = torch.float16) -> AwqScales:
    """Per-input-channel scales for `weights` (each [out_i, in]) that all read inputs `x`
    [tokens, in]."""
    x = x.reshape(-1, x.shape[-1]).float()
    w = torch.cat([t.float() for t in weights], dim=0)
    ref = x @ w.T
    x_mean = x.abs().mean(0)
    w_mean = _w_mean(weights, spec)
    best, best_ratio, best_scales = float("inf"), 0.0, torch.ones_like(x_mean)
    errors = []
    for i in range(grid):
        ratio = i / grid
        s = (x_mean.pow(ratio) / (w_mean.pow(1 - ratio) + 1e-4)).clamp(min=1e-4)
        s = s / (s.max() * s.min()).sqrt()
        wq = fake_quantize(w * s, spec, scale_dtype) / s
        err = float(((x @ wq.T - ref) ** 2).mean())
        errors.append(err)
        if err < best:
            best, best_ratio, best_scales = err, ratio, s
    return AwqScales(best_scales, best_ratio, errors)


def awq_clip(w: torch.Tensor, x: torch.Tensor, spec: IntSpec, *, grid: int = CLIP_GRID,
             max_shrink: float = CLIP_MAX_SHRINK,
             scale_dtype: torch.dtype = torch.float16) -> torch.Tensor:
    """Per (row, group) clipping ranges [out, groups] of `w` [out, in] minimising the output
    error on inputs `x` [tokens, in]; apply with `clip_weight`."""
    w = w.float()
    out_f, in_f = w.shape
    width = spec.width(in_f)
    n_g = in_f // width
    xg = x.reshape(-1, in_f).float().reshape(-1, n_g, width)  # [n, g, G]
    wg = w.reshape(out_f, n_g, width)  # [o, g, G]
    ref = torch.einsum("ngk,ogk->ogn", xg, wg)
    org_max = wg.abs().amax(-1)  # [o, g]
    best_err = torch.full_like(org_max, float("inf"))
    best_max = org_max.clone()
    for i in range(int(max_shrink * grid)):
        m = org_max * (1 - i / grid)
        cur = torch.clamp(wg, -m.unsqueeze(-1), m.unsqueeze(-1))
        s, z = qparams_from_range(cur.amin(-1), cur.amax(-1), spec, scale_dtype)
        q = dequantize(quantize(cur.reshape(-1, width), s.reshape(-1, 1), z.reshape(-1, 1),
                                spec), s.reshape(-1, 1), z.reshape(-1, 1))
        out = torch.einsum("ngk,ogk->ogn", xg, q.reshape(out_f, n_g, width))
        err = ((out - ref) ** 2).mean(-1)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best_max = torch.where(better, m, best_max)
    return best_max


def clip_weight(w: torch.Tensor, max_val: torch.Tensor) -> torch.Tensor:
    """`w` [out, in] clamped to [-max, max] per (row, group) of `max_val` [out, groups]."""
    m = max_val.float().repeat_interleave(w.shape[1] // max_val.shape[1], dim=1)
    return torch.clamp(w.float(), -m, m)


def awq_search_scales_reference(weights: list[torch.Tensor], x: torch.Tensor, spec: IntSpec,
                                ratio: float,
                                scale_dtype: torch.dtype = torch.float16) -> float:
    """Output MSE at one exponent, written out per linear and per token (the loss the search
    minimises, computed independently)."""
    x = x.reshape(-1, x.shape[-1]).float()
    x_mean = torch.stack([row.abs() for row in x]).mean(0)
    w_mean = _w_mean(weights, spec)
    s = (x_mean.pow(ratio) / (w_mean.pow(1 - ratio) + 1e-4)).clamp(min=1e-4)
    s = s / (s.max() * s.min()).sqrt()
    total, n = 0.0, 0
    for w in weights:
        wq = fake_quantize(w.float() * s, spec, scale_dtype) / s
        for row in x:
            diff = wq @ row - w.float() @ row
            total += float((diff * diff).sum())
            n += diff.numel()
    return total / n
