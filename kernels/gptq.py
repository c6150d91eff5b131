"""GPTQ (Frantar et al. 2022): column-by-column quantization with second-order error feedback.

The core of the reference implementation (IST-DASLab/gptq `gptq.py` `fasterquant`) and of
llm-compressor's `gptq_quantize.py`: Hessian H = 2/n sum x x^T of the layer's calibration inputs,
dampening (`damp` x mean diagonal), dead inputs zeroed, the upper Cholesky factor of H^-1, lazy
block updates (`block_size` columns at a time, the rest of the matrix updated once per block),
and optional act-order (columns in order of decreasing H diagonal). With act-order the groups'
scales are fixed up front from the unquantized weights ("static groups", AutoGPTQ), so group g
still covers input columns g*G..(g+1)*G and the checkpoint needs no g_idx permutation; without
it each group's scale is taken from the error-updated weights when its first column is reached,
as the reference does. Pure: tensors in, tensors out.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from kernels.affine import IntSpec, qparams, quantize, quantize_column

# Fraction of the mean Hessian diagonal added to it (the reference's percdamp is 0.01). 0.1: with
# a few thousand calibration tokens the down projection's 1536-dim Hessian is nearly singular;
# measured on the embedded model's layer 15 down_proj (11 windows of 512 tokens, error on the
# evaluation text relative to RTN): 0.91 at 0.01, 0.85 at 0.1; with 4 windows 1.44 vs 1.08.
DAMP = 0.1
BLOCK = 128  # columns per lazy block update


@dataclass(frozen=True)
class GptqResult:
    q: torch.Tensor  # int8 [out, in]
    scale: torch.Tensor  # float32 [out, groups]
    zero_point: torch.Tensor  # int8 [out, groups]
    dequantized: torch.Tensor  # float32 [out, in]
    loss: float  # sum over columns of err^2 / d, the reference's `Losses.sum()`


def hessian_update(h: torch.Tensor | None, n: int,
                   x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Running H = 2/n sum x x^T over rows of `x` [tokens, in] (float64 accumulation)."""
    x = x.reshape(-1, x.shape[-1]).float()
    m = x.shape[0]
    if h is None:
        h = torch.zeros(x.shape[1], x.shape[1], dtype=torch.float64)
    total = n + m
    # float32 products of one batch, summed across batches in float64
    h = h * (n / total) + (2.0 / total) * (x.T @ x).double()
    return h, total


def _inverse_cholesky(h: torch.Tensor, damp: float) -> torch.Tensor:
    """Upper Cholesky factor of (H + damp * mean(diag) I)^-1."""
    h = h.clone()
    h.diagonal().add_(damp * float(h.diagonal().mean()))
    low = torch.linalg.cholesky(h)
    hinv = torch.cholesky_inverse(low)
    return torch.linalg.cholesky(hinv, upper=True)


def gptq_quantize(w: torch.Tensor, h: torch.Tensor, spec: IntSpec, *, damp: float = DAMP,
                  block_size: int = BLOCK, act_order: bool = False,
                  scale_dtype: torch.dtype = torch.float16) -> GptqResult:
    """Quantize `w` [out, in] against the Hessian `h` [in, in] of its inputs."""
    # float32 in the column loop, as the reference implementation; the Hessian is accumulated in
    # float64 (hessian_update) and inverted in float64 before the cast.
    W = w.detach().float().clone()
    out_f, cols = W.shape
    H = h.detach().double().clone()
    dead = H.diagonal() == 0
    H[dead, dead] = 1.0
    W[:, dead] = 0.0
    n_groups = spec.groups(cols)
    width = spec.width(cols)
    static = act_order or spec.group_size == -1
    scale = torch.zeros(out_f, n_groups)
    zp = torch.zeros(out_f, n_groups, dtype=torch.int8)
    if static:
        scale, zp = qparams(W, spec, scale_dtype)
    perm = torch.argsort(H.diagonal(), descending=True) if act_order else torch.arange(cols)
    W = W[:, perm]
    H = H[perm][:, perm]
    hinv = _inverse_cholesky(H, damp).float()
    Q = torch.zeros_like(W)
    loss = 0.0
    for i1 in range(0, cols, block_size):
        i2 = min(i1 + block_size, cols)
        W1 = W[:, i1:i2].clone()
        Q1 = torch.zeros_like(W1)
        err1 = torch.zeros_like(W1)
        hinv1 = hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = int(perm[i1 + i])
            g = col // width
            if not static and col % width == 0:
                # this group's scale from the weights as GPTQ has updated them so far
                ahead = torch.cat([W1[:, i:], W[:, i2:]], dim=1)[:, :width]
                s, z = qparams(ahead, IntSpec(spec.bits, -1, spec.symmetric),
                               scale_dtype)
                scale[:, g], zp[:, g] = s[:, 0], z[:, 0]
            d = hinv1[i, i]
            _, dq = quantize_column(W1[:, i], scale[:, g], zp[:, g], spec)
            Q1[:, i] = dq
            e = (W1[:, i] - dq) / d
            loss += float((e * e).sum()) / 2
            W1[:, i:] -= e.unsqueeze(1) @ hinv1[i, i:].unsqueeze(0)
            err1[:, i] = e
        Q[:, i1:i2] = Q1
        W[:, i2:] -= err1 @ hinv[i1:i2, i2:]
    inv = torch.argsort(perm)
    deq = Q[:, inv]
    q = quantize(deq, scale, zp, spec)
    return GptqResult(q, scale, zp, deq, loss)


def gptq_quantize_reference(w: torch.Tensor, h: torch.Tensor, spec: IntSpec, *,
                            damp: float = DAMP,
                            scale_dtype: torch.dtype = torch.float16) -> torch.Tensor:
    """Unblocked GPTQ from the paper's Algorithm 1 with an explicit inverse Hessian updated by
    Gaussian elimination after every column (no Cholesky, no lazy blocks), groups' scales from
    the updated weights; returns the dequantized weights."""
    W = w.detach().double().clone()
    H = h.detach().double().clone()
    dead = H.diagonal() == 0
    H[dead, dead] = 1.0
    W[:, dead] = 0.0
    H.diagonal().add_(damp * float(H.diagonal().mean()))
    hinv = torch.linalg.inv(H)
    cols = W.shape[1]
    width = spec.width(cols)
    one = IntSpec(spec.bits, -1, spec.symmetric)
    s = z = torch.zeros(0)
    for c in range(cols):
        if c % width == 0:
            s, z = qparams(W[:, c:c + width].float(), one, scale_dtype)
        _, dq = quantize_column(W[:, c].float(), s[:, 0], z[:, 0], spec)
        e = (W[:, c] - dq.double()) / hinv[c, c]
        W[:, c:] -= e.unsqueeze(1) * hinv[c, c:].unsqueeze(0)
        W[:, c] = dq.double()
        # remove column c from the inverse (OBS update): H^-1 <- H^-1 - h_c h_c^T / h_cc
        hinv = hinv - torch.outer(hinv[:, c], hinv[c, :]) / hinv[c, c]
    return W.float()
