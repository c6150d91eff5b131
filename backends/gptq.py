"""GPTQ integer weights (W4A16/W8A16) by llm-compressor's `GPTQModifier`, the implementation
vLLM's maintainers keep (backends.hf.llmc runs it): sequential per decoder layer, each layer
calibrated on the outputs of the quantized layers before it, saved as compressed-tensors.

The project's own GPTQ (kernels/gptq.py) is gone: at W4A16 with per-tensor group sizes,
llm-compressor's GPTQ measured 0.20x RTN's held-out KL on the rotated float-native SmolLM2 and
0.54x on the embedded model (`make bench SECTION=hf`, 2026-12-07), where the hand-written one had
measured 0.86x on the embedded model (2026-11-23, per-channel scales on its 576-wide rows).

Plan options: `damp` (llm-compressor's dampening_frac, default 0.01), `block_size` (default
128), `actorder` ("static" by default: columns in activation order inside static groups, so the
checkpoint has no g_idx; "weight", "group" or null).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from backends.base import QuantizeOptions, Support
from backends.hf import llmc
from backends.hf.base import HfIntBackend, IntJob
from backends.registry import register

DAMP = 0.01
BLOCK = 128
ACTORDER = "static"


@register("gptq")
class GptqBackend(HfIntBackend):
    """compressed-tensors W4A16/W8A16 checkpoints by llm-compressor's GPTQ."""

    name = "gptq"
    needs_calibration = True

    def available(self) -> Support:
        base = super().available()
        return llmc.available() if base else base

    def write(self, src: Path, job: IntJob, tokens: torch.Tensor | None, out_dir: Path,
              options: QuantizeOptions) -> tuple[float, dict[str, Any], dict[str, Any]]:
        llmc.quiet()
        from llmcompressor.modifiers.quantization import GPTQModifier

        plan = options.extra

        def recipe(groups: dict[str, Any], ignore: list[str]) -> list[Any]:
            return [GPTQModifier(config_groups=groups, ignore=ignore,
                                 dampening_frac=float(plan.get("damp", DAMP)),
                                 block_size=int(plan.get("block_size", BLOCK)),
                                 actorder=plan.get("actorder", ACTORDER))]

        seconds, memory = llmc.run(src, out_dir, recipe, job.layers, tokens, options)
        return seconds, memory, llmc.written_config(out_dir)

    def written_options(self, plan: Any, job: IntJob, options: QuantizeOptions) -> dict[str, Any]:
        llmc.quiet()
        import llmcompressor

        extra = options.extra
        return {**super().written_options(plan, job, options),
                "quantizer": f"llm-compressor {llmcompressor.__version__} GPTQModifier",
                "damp": float(extra.get("damp", DAMP)),
                "actorder": extra.get("actorder", ACTORDER)}
