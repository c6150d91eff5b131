"""SmoothQuant (Xiao et al. 2023) and the W8A8-INT8 numerics it prepares for.

Smoothing moves activation outliers into the weights: for the linears that read one input X
(q/k/v after the attention norm, gate/up after the MLP norm), per input channel j, one of two
statistics:

- "absmax" (the default; the paper's, mit-han-lab/smoothquant `smooth_ln_fcs`):
  s_j = max|X_j|^alpha / max|W_j|^(1 - alpha), both maxima clamped to >= 1e-5 and s_j too;
- "range" (llm-compressor 0.14's `SmoothQuantModifier`): s_j = range(X_j)^alpha /
  (2 max|W_j|)^(1 - alpha) with range(X_j) = max X_j - min X_j, s_j = range(X_j) where the
  weights of channel j are all zero, s_j >= 1e-5. tests/backends/test_llmc_parity.py checks the
  streamed backend with it against llm-compressor itself.

max|W_j| runs over the output rows of all those linears. For activations symmetric about zero
the two agree; measured at W8A8 (`advisor eval`, 4 windows, 2026-12-07) the paper's statistic is
the better default: KL 0.0118 (0.0108-0.0125) against 0.0145 (0.0136-0.0154) on the embedded
SmolLM2-135M, 0.0103 against 0.0103 on its rotated float-native variant.
Then X diag(1/s) comes out of the preceding norm (its weight, and bias if any, divided by s) and
diag(s) goes into the linears' input columns: (X / s)(W s)^T = X W^T, exactly in real
arithmetic.

W8A8-INT8 (compressed-tensors `INT8_W8A8` preset as vLLM serves it):
- weights: int8, symmetric, one scale per output channel: kernels.affine with
  IntSpec(8, -1, symmetric=True) (scale = absmax / 127.5, q in [-128, 127], compressed-tensors'
  rule);
- activations: dynamic per-token symmetric int8 as vLLM's `scaled_int8_quant` computes it
  (csrc/quantization/compressed_tensors/int8_quant_kernels.cu): scale = absmax / 127 per token,
  q = round-half-even(x / scale) clamped to [-128, 127]. compressed-tensors' own fake-quant
  forward, which transformers runs when it loads the checkpoint, divides by 127.5 instead
  (`calculate_qparams`: absmax / (range / 2)): `qmax=CT_TOKEN_QMAX` gives that rule.
Pure: tensors in, tensors out.
"""

from __future__ import annotations

import torch

from kernels.affine import IntSpec, dequantize, qparams, quantize

DEFAULT_ALPHA = 0.5
CLAMP = 1e-5  # smallest s_j (both); smallest max|X_j|, max|W_j| (absmax)
STATISTICS = ("absmax", "range")
DEFAULT_STATISTIC = "absmax"
INT8_WEIGHTS = IntSpec(8, -1, symmetric=True)
TOKEN_QMAX = 127.0  # vLLM: absmax maps to +-127
CT_TOKEN_QMAX = 127.5  # compressed-tensors' forward: absmax maps to 127.5 (clamped to 127)
TOKEN_EPS = 1e-10  # scale of an all-zero token (its integers are zeros whatever the scale)


def activation_range(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (min, max) [hidden] of activations `x` [..., hidden], float32."""
    flat = x.detach().reshape(-1, x.shape[-1]).float()
    return flat.amin(dim=0), flat.amax(dim=0)


def smoothing_scales(act_lo: torch.Tensor, act_hi: torch.Tensor, weights: list[torch.Tensor],
                     alpha: float = DEFAULT_ALPHA, statistic: str = DEFAULT_STATISTIC
                     ) -> torch.Tensor:
    """Per-input-channel smoothing factors s [in] (float32) from the calibration activations'
    per-channel min and max [in] and the weights [out_i, in] of the linears reading them."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha={alpha!r}; expected 0 <= alpha <= 1")
    if statistic not in STATISTICS:
        raise ValueError(f"statistic={statistic!r}; expected one of {', '.join(STATISTICS)}")
    if act_lo.dim() != 1 or act_hi.shape != act_lo.shape \
            or any(w.shape[1] != act_lo.shape[0] for w in weights):
        raise ValueError(f"activation ranges {tuple(act_lo.shape)} do not match weights "
                         f"{[tuple(w.shape) for w in weights]}")
    w_max = torch.cat([w.detach().float().abs() for w in weights], dim=0).amax(dim=0)
    lo, hi = act_lo.float(), act_hi.float()
    if statistic == "absmax":
        x_max = torch.maximum(lo.abs(), hi.abs()).clamp(min=CLAMP)
        s = x_max.pow(alpha) / w_max.clamp(min=CLAMP).pow(1.0 - alpha)
    else:
        w_max, x_range = 2.0 * w_max, hi - lo
        s = torch.where(w_max > 0, x_range.pow(alpha) / w_max.pow(1.0 - alpha), x_range)
    return s.clamp(min=CLAMP)


def fold_smoothing(norm_weight: torch.Tensor, norm_bias: torch.Tensor | None,
                   weights: list[torch.Tensor], s: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor | None, list[torch.Tensor]]:
    """(norm weight / s, norm bias / s, [W * s]): the smoothed norm and linears; in float the
    layer computes the same function (up to rounding)."""
    s = s.float()
    bias = None if norm_bias is None else norm_bias.float() / s
    return norm_weight.float() / s, bias, [w.float() * s.unsqueeze(0) for w in weights]


def quantize_weight(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(int8 [out, in], float32 scale [out, 1] exactly representable in float16): symmetric
    per-output-channel int8, compressed-tensors' rule."""
    scale, zp = qparams(w, INT8_WEIGHTS)
    return quantize(w, scale, zp, INT8_WEIGHTS), scale


def fake_quantize_weight(w: torch.Tensor) -> torch.Tensor:
    q, scale = quantize_weight(w)
    return dequantize(q, scale, torch.zeros_like(scale, dtype=torch.int8))


def quantize_tokens(x: torch.Tensor,
                    qmax: float = TOKEN_QMAX) -> tuple[torch.Tensor, torch.Tensor]:
    """(int8 codes, float32 per-token scales [..., 1]) of activations `x` [..., hidden]: scale
    absmax / `qmax`."""
    absmax = x.detach().float().abs().amax(dim=-1, keepdim=True)
    scale = torch.clamp(absmax / qmax, min=TOKEN_EPS)
    q = torch.clamp(torch.round(x.float() / scale), -128, 127)  # torch.round: ties to even
    return q.to(torch.int8), scale


def fake_quantize_tokens(x: torch.Tensor, qmax: float = TOKEN_QMAX) -> torch.Tensor:
    """Activations as the W8A8-INT8 GEMM sees them (same dtype as `x`)."""
    q, scale = quantize_tokens(x, qmax)
    return (q.float() * scale).to(x.dtype)


def int8_linear_reference(x: torch.Tensor, wq: torch.Tensor, w_scale: torch.Tensor,
                          bias: torch.Tensor | None = None) -> torch.Tensor:
    """A W8A8-INT8 linear as vLLM computes it (float32 out): per-token int8 activations, the
    exact int32 product q_x q_w^T (done in float64, exact for these sizes), times both scales."""
    flat = x.reshape(-1, x.shape[-1])
    xq, xs = quantize_tokens(flat)
    acc = (xq.double() @ wq.double().t()).float()
    out = acc * xs * w_scale.float().reshape(1, -1)
    if bias is not None:
        out = out + bias.float()
    return out.reshape(*x.shape[:-1], wq.shape[0])
