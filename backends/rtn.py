"""Round-to-nearest integer weights (W4A16/W8A16): each group's min/max scale, no calibration.
The baseline GPTQ and AWQ are measured against.

Written here, streamed one decoder layer at a time, rather than by llm-compressor's `oneshot`
(`QuantizationModifier` with the plan's config_groups), which on a CPU holds the whole float32
model (backends.hf.llmc). The result is llm-compressor's: tests/backends/test_llmc_parity.py
finds the same config and scales, and the same integers but for under 2% of the weights one step
apart (llm-compressor rounds w / scale before its scales are cast to float16, this writer after,
so the stored pair dequantizes to what was rounded)."""

from __future__ import annotations

import torch

from backends.base import QuantizeOptions
from backends.hf.base import HfIntBackend, linear
from backends.hf.stream import Activations
from backends.hf.writer import QuantizedLinear
from backends.registry import register
from kernels.affine import IntSpec, qparams, quantize


@register("rtn")
class RtnBackend(HfIntBackend):
    """compressed-tensors W4A16/W8A16 checkpoints by round-to-nearest."""

    name = "rtn"
    needs_calibration = False

    def quantize_layer(self, index: int, layer: torch.nn.Module, acts: Activations,
                       specs: dict[str, IntSpec | None],
                       options: QuantizeOptions) -> dict[str, QuantizedLinear]:
        out = {}
        for path, spec in specs.items():
            if spec is None:
                continue
            w = linear(layer, path).weight.data
            scale, zp = qparams(w, spec)
            out[path] = QuantizedLinear(quantize(w, scale, zp, spec), scale, zp, spec)
        return out
