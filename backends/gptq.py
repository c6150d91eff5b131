"""GPTQ integer weights (W4A16/W8A16): per decoder layer, the Hessians of every linear's inputs
from one float forward over the calibration windows, then kernels.gptq on each linear; the next
layer calibrates on the quantized layer's outputs (sequential, as llm-compressor and AutoGPTQ).

Plan options: `act_order` (default False: static groups keep the checkpoint free of g_idx),
`damp` (default kernels.gptq.DAMP, 0.1), `block_size` (default 128).
"""

from __future__ import annotations

import torch

from backends.base import QuantizeOptions
from backends.hf import torch_threads
from backends.hf.base import HfIntBackend, linear, run_capturing_inputs
from backends.hf.stream import Activations
from backends.hf.writer import QuantizedLinear
from backends.registry import register
from kernels.affine import IntSpec
from kernels.gptq import BLOCK, DAMP, gptq_quantize, hessian_update


@register("gptq")
class GptqBackend(HfIntBackend):
    """compressed-tensors W4A16/W8A16 checkpoints by GPTQ."""

    name = "gptq"
    needs_calibration = True
    propagate_quantized = True

    def quantize_layer(self, index: int, layer: torch.nn.Module, acts: Activations,
                       specs: dict[str, IntSpec | None],
                       options: QuantizeOptions) -> dict[str, QuantizedLinear]:
        todo = {p: s for p, s in specs.items() if s is not None}
        hessians: dict[str, tuple[torch.Tensor | None, int]] = {p: (None, 0) for p in todo}
        def add(path: str, x: torch.Tensor) -> None:
            h, n = hessians[path]
            hessians[path] = hessian_update(h, n, x)

        run_capturing_inputs(layer, acts, list(todo), add)
        plan = options.extra
        out = {}
        # The column loop is thousands of tiny ops: one thread avoids OpenMP hand-offs that made
        # it 10x slower on the 2-core CI machine under load.
        with torch_threads(1):
            for path, spec in todo.items():
                out[path] = self._one(layer, path, spec, hessians[path][0], plan)
        return out

    @staticmethod
    def _one(layer: torch.nn.Module, path: str, spec: IntSpec, h: torch.Tensor | None,
             plan: dict[str, object]) -> QuantizedLinear:
        assert h is not None
        lin = linear(layer, path)
        res = gptq_quantize(lin.weight.data, h, spec,
                            damp=float(plan.get("damp", DAMP)),  # type: ignore[arg-type]
                            block_size=int(plan.get("block_size", BLOCK)),  # type: ignore[call-overload]
                            act_order=bool(plan.get("act_order", False)))
        lin.weight.data = res.dequantized.to(lin.weight.dtype)
        return QuantizedLinear(res.q, res.scale, res.zero_point, spec)
