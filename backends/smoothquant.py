"""W8A8-INT8 by SmoothQuant: compressed-tensors `int-quantized` checkpoints (llm-compressor's
SmoothQuantModifier followed by the W8A8 preset, with round-to-nearest weights).

Per decoder layer, streamed: the float layer runs over the calibration windows while hooks record
each input channel's min and max of the linears behind the two norms (llm-compressor's default
Llama mappings: q/k/v after `input_layernorm`, gate/up after `post_attention_layernorm`; o_proj
and down_proj are not smoothed). The smoothing factors (kernels.smoothquant; plan options
`smoothquant_statistic`, "absmax" by default or llm-compressor's "range", and
`smoothquant_alpha`, 0.5 by default) are folded into the norm weights (written, in float16,
with the checkpoint) and the linears' input columns; then
every planned linear gets symmetric per-output-channel int8 weights, and the config marks its
inputs for vLLM's dynamic per-token int8 quantization. As in the original SmoothQuant, the
statistics come from the float model: the next layer calibrates on this layer's float outputs
(smoothing does not change them).

Why not llm-compressor's `oneshot` itself: on a CPU it holds the whole float32 model in memory,
where this streams one decoder layer at a time (bounded memory, issue 17). Its result is
llm-compressor's with statistic "range": tests/backends/test_llmc_parity.py runs
`SmoothQuantModifier` + the W8A8 preset on the same tiny model and windows and compares the
checkpoints. The default is the paper's "absmax", which measured better (kernels.smoothquant).
Embeddings, norms and the LM head stay float16.

Measured on the CPU (`advisor eval`, backends.hf.runner): transformers + compressed-tensors
decompress the int8 weights to float32 and fake-quantize every listed linear's input per token
in the forward pass, with compressed-tensors' rule (scale absmax / 127.5, the largest value
rounding to 127 or -128) where vLLM's kernel divides by 127: the same size of noise, other
roundings (SmolLM2-135M, 4 windows, absmax statistic: KL 0.0115 as loaded vs 0.0117 with
vLLM's rule simulated by kernels.smoothquant). tests/backends/test_hf_w8a8.py checks the loaded
logits against kernels.smoothquant's fake quantization.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from advisor.errors import BadInput
from advisor.modelspec import ModelSpec
from advisor.plan import QuantPlan
from backends.base import QuantizeOptions
from backends.hf.base import HfQuantBackend, IntJob, linear, run_capturing_inputs
from backends.hf.stream import Activations
from backends.hf.writer import InputQuant, QuantizedLinear
from backends.registry import register
from kernels import smoothquant
from kernels.affine import IntSpec

# (norm, the linears reading its output): llm-compressor DEFAULT_SMOOTHQUANT_MAPPINGS for Llama
MAPPINGS = (
    ("input_layernorm", ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")),
    ("post_attention_layernorm", ("mlp.gate_proj", "mlp.up_proj")),
)
ALPHA_KEY = "smoothquant_alpha"
STAT_KEY = "smoothquant_statistic"
PROBE_TOKENS = 16  # tokens the norm-linearity check runs


def _statistic(options: QuantizeOptions) -> str:
    stat = options.extra.get(STAT_KEY, smoothquant.DEFAULT_STATISTIC)
    if stat not in smoothquant.STATISTICS:
        raise BadInput(f"SmoothQuant statistic {STAT_KEY}={stat!r}",
                       f"use one of {', '.join(smoothquant.STATISTICS)} (\"range\" is "
                       "llm-compressor's)")
    return str(stat)


def _alpha(options: QuantizeOptions) -> float:
    alpha = options.extra.get(ALPHA_KEY, smoothquant.DEFAULT_ALPHA)
    if not isinstance(alpha, (int, float)) or not 0.0 <= float(alpha) <= 1.0:
        raise BadInput(f"SmoothQuant migration strength {ALPHA_KEY}={alpha!r}",
                       "use a number from 0 (no smoothing) to 1 (all into the weights); 0.5 is "
                       "the usual")
    return float(alpha)


def _fold(norm: torch.nn.Module, lins: list[torch.nn.Linear], s: torch.Tensor,
          probe: torch.Tensor, where: str) -> None:
    """Fold 1/s into the norm and s into the linears; check the norm really scales by 1/s (it
    does not when it computes with 1 + weight, as Gemma's does)."""
    weight = norm.weight
    assert isinstance(weight, torch.Tensor)
    bias = getattr(norm, "bias", None)
    with torch.no_grad():
        before = norm(probe)
        w, b, ws = smoothquant.fold_smoothing(weight.data, bias.data if bias is not None
                                              else None, [m.weight.data for m in lins], s)
        weight.data = w
        if bias is not None and b is not None:
            bias.data = b
        for m, new in zip(lins, ws):
            m.weight.data = new
        after = norm(probe)
    if not torch.allclose(after * s, before, rtol=1e-4, atol=1e-5):
        raise BadInput(f"{where}: this norm's output does not scale with its weight, so "
                       "SmoothQuant cannot fold factors into it",
                       "use a Llama/Mistral/Qwen2-style model, or the rtn/gptq/awq backends")


@register("smoothquant")
class SmoothQuantBackend(HfQuantBackend[IntSpec]):
    """compressed-tensors W8A8-INT8 checkpoints: SmoothQuant, int8 weights, int8 inputs."""

    name = "smoothquant"
    spec_type = IntSpec
    needs_calibration = True
    propagate_quantized = False

    def quantize(self, spec: ModelSpec, plan: QuantPlan, out_dir: Path,
                 options: QuantizeOptions) -> QuantPlan:
        _alpha(options)  # a bad option fails before any work
        _statistic(options)
        return super().quantize(spec, plan, out_dir, options)

    def quantize_layer(self, index: int, layer: torch.nn.Module, acts: Activations,
                       specs: dict[str, IntSpec | None],
                       options: QuantizeOptions) -> dict[str, QuantizedLinear]:
        alpha, statistic = _alpha(options), _statistic(options)
        todo = {p: s for p, s in specs.items() if s is not None}
        groups = [(n, paths) for n, paths in MAPPINGS if all(p in todo for p in paths)]
        seen: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

        def record(path: str, x: torch.Tensor) -> None:
            lo, hi = smoothquant.activation_range(x)
            if path in seen:
                lo, hi = torch.minimum(seen[path][0], lo), torch.maximum(seen[path][1], hi)
            seen[path] = (lo, hi)

        nxt = run_capturing_inputs(layer, acts, [paths[0] for _, paths in groups], record)
        probe = acts.hidden[0, :PROBE_TOKENS].float()
        for norm_path, paths in groups:
            lins = [linear(layer, p) for p in paths]
            s = smoothquant.smoothing_scales(*seen[paths[0]], [m.weight.data for m in lins],
                                             alpha, statistic)
            _fold(layer.get_submodule(norm_path), lins, s, probe,
                  f"model.layers.{index}.{norm_path}")
        out = {}
        for path, spec in todo.items():
            q, scale = smoothquant.quantize_weight(linear(layer, path).weight.data)
            zp = torch.zeros(scale.shape, dtype=torch.int8)  # symmetric: not stored
            out[path] = QuantizedLinear(q, scale, zp, spec, InputQuant.INT8)
        acts.hidden = nxt
        return out

    def written_options(self, plan: QuantPlan, job: IntJob,
                        options: QuantizeOptions) -> dict[str, Any]:
        return {"alpha": _alpha(options), "statistic": _statistic(options),
                "smoothed": [f"{n} -> {', '.join(p)}" for n, p in MAPPINGS],
                "weights": "int8, symmetric, one scale per output channel (round to nearest)",
                "activations": "int8, symmetric, dynamic per token"}
