"""W8A8-FP8: llm-compressor's FP8_DYNAMIC checkpoints (compressed-tensors `float-quantized`).

Every planned decoder linear gets float8_e4m3fn weights with one float32 scale per output channel
(absmax / 448, kernels.fp8); its inputs are quantized by the runtime per token, dynamically, to
E4M3 (`input_activations: {type: float, strategy: token, dynamic: true}`), so nothing is
calibrated. vLLM runs the GEMM in FP8 on sm_89+ (Ada, Hopper and later). Embeddings, norms and
the LM head stay float16.

Streamed one decoder layer at a time rather than by llm-compressor's `oneshot` with its
`FP8_DYNAMIC` preset, which on a CPU holds the whole float32 model (backends.hf.llmc); the result
is that preset's: tests/backends/test_llmc_parity.py finds the same config, scales within
float16 rounding (kept in float32 here) and the same FP8 codes for over 98% of the weights.

Measured on the CPU (`advisor eval`, backends.hf.runner): plain transformers loads the checkpoint
through compressed-tensors, which decompresses the weights to float32 and keeps its quantized
forward on every listed linear; with `input_activations` dynamic it fake-quantizes each input per
token (absmax / 448, E4M3 round trip) before the float32 matmul. That is vLLM's rule but for its
1 / (448 * 512) floor on a token's scale, and the float32 product of the dequantized operands is
the FP8 GEMM's up to float32 rounding. tests/backends/test_hf_w8a8.py checks that the loaded
model's logits are the weight-only logits moved by exactly kernels.fp8's fake quantization.
"""

from __future__ import annotations

from typing import Any

import torch

from advisor.plan import QuantPlan
from backends.base import QuantizeOptions
from backends.hf.base import HfQuantBackend, IntJob, linear
from backends.hf.stream import Activations
from backends.hf.writer import InputQuant, QuantizedLinear
from backends.registry import register
from kernels import fp8
from kernels.fp8 import Fp8Spec


@register("fp8")
class Fp8Backend(HfQuantBackend[Fp8Spec]):
    """compressed-tensors W8A8-FP8 checkpoints: E4M3 weights, dynamic per-token E4M3 inputs."""

    name = "fp8"
    spec_type = Fp8Spec
    needs_calibration = False

    def quantize_layer(self, index: int, layer: torch.nn.Module, acts: Activations,
                       specs: dict[str, Fp8Spec | None],
                       options: QuantizeOptions) -> dict[str, QuantizedLinear]:
        out = {}
        for path, spec in specs.items():
            if spec is None:
                continue
            q, scale = fp8.quantize_weight(linear(layer, path).weight.data, spec)
            zp = torch.zeros(scale.shape, dtype=torch.int8)  # symmetric: not stored
            out[path] = QuantizedLinear(q, scale, zp, spec, InputQuant.FP8)
        return out

    def written_options(self, plan: QuantPlan, job: IntJob,
                        options: QuantizeOptions) -> dict[str, Any]:
        return {"weights": "float8_e4m3fn, one float32 scale per output channel",
                "activations": "float8_e4m3fn, dynamic per token"}
