"""A toy backend, as a newcomer would add one: this one file plus one `declare` line
(tests/conftest.py declares it for the whole suite, as backends/__init__.py declares the real
ones). It writes W8A16 by round-to-nearest with each group's range shrunk to 99% (the largest
weights clamp): nothing else of the project names it, yet it is offered by
`recommend`, written by `quantize` and run by the conformance suite."""

from __future__ import annotations

import torch

from backends.base import QuantizeOptions
from backends.hf.base import HfIntBackend, linear
from backends.hf.stream import Activations
from backends.hf.writer import QuantizedLinear
from backends.registry import register
from kernels.affine import IntSpec, qparams, quantize

RANGE = 0.99


@register("toy")
class ToyBackend(HfIntBackend):
    """compressed-tensors W8A16 checkpoints by round-to-nearest of slightly clipped groups."""

    name = "toy"
    needs_calibration = False

    def quantize_layer(self, index: int, layer: torch.nn.Module, acts: Activations,
                       specs: dict[str, IntSpec | None],
                       options: QuantizeOptions) -> dict[str, QuantizedLinear]:
        out = {}
        for path, spec in specs.items():
            if spec is None:
                continue
            w = linear(layer, path).weight.data
            scale, zp = qparams(w * RANGE, spec)
            out[path] = QuantizedLinear(quantize(w, scale, zp, spec), scale, zp, spec)
        return out
