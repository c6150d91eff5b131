"""FP8 E4M3 (float8_e4m3fn) weights and activations: the W8A8-FP8 family.

Conventions are compressed-tensors' (quantization/utils/helpers.py `calculate_qparams`,
lifecycle/forward_helpers.py `_quantize`), so a weight quantized here is stored by its
`float-quantized` compressor without changing a single code:

- weights: scale = absmax / 448 over the whole tensor (per tensor, shape [1]) or over each
  output row (per channel, shape [out, 1]); an all-zero scale becomes float32 eps (as
  `calculate_qparams` does); q = clamp(w / scale, -448, 448) cast to float8_e4m3fn (round to
  nearest even; torch's cast); w' = q * scale. Scales are float32: vLLM holds FP8 weight scales
  in float32 whatever the checkpoint dtype, and advisor.formats.schemes counts 4 bytes each.
- activations (vLLM's dynamic per-token quantization for W8A8-FP8, `QuantFP8` per token /
  `dynamic_per_token_scaled_fp8_quant`): per token (row of the last dimension)
  scale = max(absmax / 448, 1 / (448 * 512)), q = clamp(x / scale) cast to E4M3.
  `fake_quantize_tokens` is that quantization followed by the dequantization, which is what the
  scaled GEMM computes with (the float32 accumulation of q_x q_w^T times both scales).

`e4m3_reference` is a plain-arithmetic (Python floats) E4M3 rounding, independent of torch's cast,
for the tests. `scaled_mm` is the GPU GEMM (`torch._scaled_mm`, row-wise scales, as vLLM's CUTLASS
kernel computes it); `scaled_mm_reference` the dequantized float32 matmul it is checked against.
Pure: tensors in, tensors out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

E4M3 = torch.float8_e4m3fn
E4M3_MAX = 448.0  # torch.finfo(torch.float8_e4m3fn).max: 1.75 * 2^8 (S.1111.111 is NaN)
E4M3_MIN_NORMAL_EXP = -6  # smallest normal 2^-6; subnormals are multiples of 2^-9
E4M3_MANTISSA_BITS = 3
# vLLM's _FP8_MIN_SCALING_FACTOR: a token of zeros (or tiny values) gets this scale
MIN_TOKEN_SCALE = 1.0 / (E4M3_MAX * 512.0)
SCALE_DTYPE = torch.float32


@dataclass(frozen=True)
class Fp8Spec:
    """An FP8 E4M3 weight format: one scale per output channel (llm-compressor's FP8_DYNAMIC
    preset) or one per tensor."""

    per_channel: bool = True


def weight_scale(w: torch.Tensor, spec: Fp8Spec = Fp8Spec()) -> torch.Tensor:
    """float32 scale of `w` [out, in]: [out, 1] per channel, [1] per tensor."""
    a = w.detach().float().abs()
    absmax = a.amax(dim=1, keepdim=True) if spec.per_channel else a.amax().reshape(1)
    scale = absmax / E4M3_MAX
    return torch.where(scale == 0, torch.finfo(SCALE_DTYPE).eps, scale).to(SCALE_DTYPE)


def quantize(x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """float8_e4m3fn codes of `x` for a broadcastable `scale` (saturating at +-448)."""
    return torch.clamp(x.float() / scale, -E4M3_MAX, E4M3_MAX).to(E4M3)


def dequantize(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """float32 values of E4M3 codes `q` with a broadcastable `scale`."""
    return q.float() * scale.float()


def quantize_weight(w: torch.Tensor,
                    spec: Fp8Spec = Fp8Spec()) -> tuple[torch.Tensor, torch.Tensor]:
    """(E4M3 codes [out, in], float32 scale) of a weight."""
    scale = weight_scale(w, spec)
    return quantize(w, scale), scale


def fake_quantize_weight(w: torch.Tensor, spec: Fp8Spec = Fp8Spec()) -> torch.Tensor:
    q, scale = quantize_weight(w, spec)
    return dequantize(q, scale)


def token_scale(x: torch.Tensor) -> torch.Tensor:
    """vLLM's dynamic per-token scale of activations `x` [..., hidden]: float32 [..., 1]."""
    absmax = x.detach().float().abs().amax(dim=-1, keepdim=True)
    return torch.clamp(absmax / E4M3_MAX, min=MIN_TOKEN_SCALE)


def quantize_tokens(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(E4M3 codes, float32 per-token scales [..., 1]) of activations `x` [..., hidden]."""
    scale = token_scale(x)
    return quantize(x, scale), scale


def fake_quantize_tokens(x: torch.Tensor) -> torch.Tensor:
    """Activations as the W8A8-FP8 GEMM sees them (same dtype as `x`)."""
    q, scale = quantize_tokens(x)
    return dequantize(q, scale).to(x.dtype)


def scaled_mm(xq: torch.Tensor, x_scale: torch.Tensor, wq: torch.Tensor, w_scale: torch.Tensor,
              out_dtype: torch.dtype = torch.bfloat16,
              bias: torch.Tensor | None = None) -> torch.Tensor:
    """x_q [M, K] (E4M3, scales [M, 1]) times w_q [N, K]^T (E4M3, scales [N, 1] or [1]) with
    `torch._scaled_mm`: the GEMM vLLM runs for W8A8-FP8 on sm_89+. CUDA wants K and N multiples
    of 16 and row-wise scales with a bfloat16 output; `w_q.t()` is the column-major operand it
    requires. Returns [M, N] in `out_dtype`."""
    m, n = xq.shape[0], wq.shape[0]
    scale_b = w_scale.float().reshape(1, -1).expand(1, n) if w_scale.numel() == 1 else \
        w_scale.float().reshape(1, n)
    out: torch.Tensor = torch._scaled_mm(
        xq, wq.t(), scale_a=x_scale.float().reshape(m, 1).contiguous(),
        scale_b=scale_b.contiguous(), bias=bias, out_dtype=out_dtype)
    return out


def scaled_mm_reference(xq: torch.Tensor, x_scale: torch.Tensor, wq: torch.Tensor,
                        w_scale: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """The dequantized float32 matmul `scaled_mm` computes: (q_x s_x) (q_w s_w)^T (+ bias)."""
    out = dequantize(xq, x_scale.reshape(-1, 1)) @ dequantize(wq, w_scale.reshape(-1, 1)).t()
    return out if bias is None else out + bias.float()


def linear(x: torch.Tensor, wq: torch.Tensor, w_scale: torch.Tensor,
           bias: torch.Tensor | None = None, use_scaled_mm: bool = False) -> torch.Tensor:
    """A W8A8-FP8 linear on activations `x` [..., K]: per-token E4M3 quantization, then the
    scaled GEMM (`use_scaled_mm`) or its float32 reference. Returns x's dtype."""
    flat = x.reshape(-1, x.shape[-1])
    xq, xs = quantize_tokens(flat)
    if use_scaled_mm:
        out = scaled_mm(xq, xs, wq, w_scale, bias=bias)
    else:
        out = scaled_mm_reference(xq, xs, wq, w_scale, bias)
    return out.to(x.dtype).reshape(*x.shape[:-1], wq.shape[0])


def e4m3_reference(values: torch.Tensor) -> torch.Tensor:
    """Plain-arithmetic E4M3 rounding of each value (float32 out): round to nearest, ties to
    even, on the E4M3 grid (3 mantissa bits; exponents from -6, subnormal spacing 2^-9),
    saturating at +-448; signed zeros kept, NaN stays NaN. One Python float at a time."""
    flat = [_e4m3_scalar(v) for v in values.detach().double().reshape(-1).tolist()]
    return torch.tensor(flat, dtype=torch.float32).reshape(values.shape)


def _e4m3_scalar(v: float) -> float:
    if math.isnan(v):
        return v
    a = abs(v)
    if a >= E4M3_MAX:
        return math.copysign(E4M3_MAX, v)
    _, e = math.frexp(a)  # a = m * 2^e with 0.5 <= m < 1, so a's binade is 2^(e-1)
    exp = max(e - 1, E4M3_MIN_NORMAL_EXP)  # below 2^-6 the spacing stays 2^-9 (subnormals)
    ulp = 2.0 ** (exp - E4M3_MANTISSA_BITS)
    r = round(a / ulp) * ulp  # a / ulp is exact (power of two); round() ties to even
    return math.copysign(min(r, E4M3_MAX), v)
