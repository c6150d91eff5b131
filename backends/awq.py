"""AWQ integer weights (W4A16/W8A16), AutoAWQ's recipe per decoder layer: inputs of every linear
from one float forward; activation-aware scales for q/k/v (folded into the attention norm),
v -> o (only when their shapes allow, i.e. without grouped-query attention), gate/up (folded
into the MLP norm) and up -> down; weight clipping for all but q/k; then round-to-nearest.
The next layer calibrates on the float layer's outputs, as AutoAWQ does."""

from __future__ import annotations

import torch

from backends.base import QuantizeOptions
from backends.hf.base import HfIntBackend, linear, run_capturing_inputs
from backends.hf.stream import Activations
from backends.hf.writer import QuantizedLinear
from backends.registry import register
from kernels.affine import IntSpec, qparams, quantize
from kernels.awq import awq_clip, awq_search_scales, clip_weight

SEARCH_TOKENS = 2048  # calibration tokens the scale search scores (all of 4 windows)
CLIP_TOKENS = 256  # tokens the clipping search scores (AutoAWQ: 512 over 64 batches)
_NO_CLIP = ("self_attn.q_proj", "self_attn.k_proj")  # AutoAWQ: their error is softmax-damped


def _sample(x: torch.Tensor, n: int) -> torch.Tensor:
    x = x.reshape(-1, x.shape[-1])
    if x.shape[0] <= n:
        return x
    step = x.shape[0] // n
    return x[::step][:n]


@register("awq")
class AwqBackend(HfIntBackend):
    """compressed-tensors W4A16/W8A16 checkpoints by AWQ."""

    name = "awq"
    needs_calibration = True
    propagate_quantized = False

    def quantize_layer(self, index: int, layer: torch.nn.Module, acts: Activations,
                       specs: dict[str, IntSpec | None],
                       options: QuantizeOptions) -> dict[str, QuantizedLinear]:
        todo = {p: s for p, s in specs.items() if s is not None}
        inputs: dict[str, list[torch.Tensor]] = {p: [] for p in todo}
        nxt = run_capturing_inputs(  # float outputs: the next layer's inputs
            layer, acts, list(todo),
            lambda path, x: inputs[path].append(x.reshape(-1, x.shape[-1])))
        x = {p: torch.cat(v) for p, v in inputs.items()}
        attn_norm = layer.get_submodule("input_layernorm")
        mlp_norm = layer.get_submodule("post_attention_layernorm")
        groups = [
            (attn_norm, ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")),
            (linear(layer, "self_attn.v_proj"), ("self_attn.o_proj",)),
            (mlp_norm, ("mlp.gate_proj", "mlp.up_proj")),
            (linear(layer, "mlp.up_proj"), ("mlp.down_proj",)),
        ]
        for prev, paths in groups:
            if any(p not in todo for p in paths):
                continue
            lins = [linear(layer, p) for p in paths]
            prev_w = prev.weight
            assert isinstance(prev_w, torch.Tensor)
            prev_out = prev_w.shape[0]
            if prev_out != lins[0].weight.shape[1]:
                continue  # v -> o under grouped-query attention: no per-channel fold exists
            spec = todo[paths[0]]
            assert spec is not None
            res = awq_search_scales([m.weight.data for m in lins],
                                    _sample(x[paths[0]], SEARCH_TOKENS), spec)
            s = res.scales
            if isinstance(prev, torch.nn.Linear):
                prev.weight.data = prev.weight.data / s.unsqueeze(1)
                if prev.bias is not None:
                    prev.bias.data = prev.bias.data / s
            else:  # RMSNorm weight
                prev_w.data = prev_w.data / s
            for m, p in zip(lins, paths):
                m.weight.data = m.weight.data * s.unsqueeze(0)
                x[p] = x[p] / s
        out = {}
        for path, spec in todo.items():
            lin = linear(layer, path)
            w = lin.weight.data
            if path not in _NO_CLIP:
                w = clip_weight(w, awq_clip(w, _sample(x[path], CLIP_TOKENS), spec))
            scale, zp = qparams(w, spec)
            out[path] = QuantizedLinear(quantize(w, scale, zp, spec), scale, zp, spec)
        acts.hidden = nxt
        return out
