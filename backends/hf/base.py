"""What the HF checkpoint backends (rtn, gptq, awq, smoothquant, fp8) share: plan -> per-module
weight formats, calibration windows, the layer-streamed quantize loop writing a compressed-tensors
checkpoint, loading it back in transformers, and vLLM serving files.

A backend subclasses `HfQuantBackend[S]` (S: the weight spec its quantizer takes; the integer
ones `HfIntBackend`) and implements `quantize_layer`; it says which plan formats it writes, the
scheme `serves_on` gates with, whether it needs calibration activations and whether the next
layer sees the quantized outputs. Plan formats map to weight specs here: W4A16/W8A16 to grouped
integers (`IntSpec`), W8A8-INT8 to symmetric per-channel int8, W8A8-FP8 to per-channel E4M3
(`Fp8Spec`); the W8A8 backends mark their linears' inputs for dynamic per-token quantization.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import torch

from advisor.artifact.serving import Serving
from advisor.errors import BadInput
from advisor.formats.schemes import (
    DEFAULT_GROUP_SIZE,
    FLOAT_FORMATS,
    GROUPED_SCHEMES,
    WEIGHT_BITS,
    group_for,
)
from advisor.hardware import HardwareProfile
from advisor.inspect.untrusted import refuse_custom_code
from advisor.modelspec import LINEAR_ROLES, ModelSpec, Role
from advisor.plan import QuantPlan
from advisor.textdata import default_calibration_text
from backends.base import QuantizeOptions, Runner, Support
from backends.hf.stream import Activations
from backends.hf.writer import QuantizedLinear, WeightSpec
from kernels.affine import IntSpec
from kernels.fp8 import Fp8Spec

log = logging.getLogger(__name__)

# Role -> module path inside a Llama/Mistral/Qwen2-style decoder layer.
LAYER_MODULES = {
    Role.ATTN_Q: "self_attn.q_proj", Role.ATTN_K: "self_attn.k_proj",
    Role.ATTN_V: "self_attn.v_proj", Role.ATTN_O: "self_attn.o_proj",
    Role.MLP_GATE: "mlp.gate_proj", Role.MLP_UP: "mlp.up_proj", Role.MLP_DOWN: "mlp.down_proj",
}
# vLLM fuses these into one GEMM (qkv_proj, gate_up_proj): one precision each.
FUSED = (("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
         ("mlp.gate_proj", "mlp.up_proj"))
INT_BITS = {s: b for s, b in WEIGHT_BITS.items() if s in GROUPED_SCHEMES}  # W4A16: 4, W8A16: 8
# 512-token windows of calibration text (QuantizeOptions.extra["calib_windows"]; 0 = all the text
# gives: 11 for data/calibration.txt). All of it by default: GPTQ overfits 4 windows (see DAMP).
CALIB_WINDOWS = 0
CALIB_TOKENS = 512
DEFAULT_GROUP = DEFAULT_GROUP_SIZE


S = TypeVar("S", IntSpec, Fp8Spec)


@dataclass(frozen=True)
class IntJob:
    """Per decoder layer: module path -> its weight format (None: stays float)."""

    layers: tuple[dict[str, WeightSpec | None], ...]
    canonical: dict[str, str]  # full module name -> canonical tensor name
    fallbacks: dict[str, int]  # canonical name -> group size used instead of the planned one

    def float_linears(self) -> list[str]:
        return [f"model.layers.{i}.{m}" for i, layer in enumerate(self.layers)
                for m, s in layer.items() if s is None]


def plan_job(spec: ModelSpec, plan: QuantPlan, formats: tuple[str, ...] = tuple(INT_BITS)
             ) -> IntJob:
    """Validate an HF plan against the model and the `formats` its backend writes, and turn it
    into per-module weight formats."""
    group = int(plan.options.get("group_size", DEFAULT_GROUP))
    sym = bool(plan.options.get("symmetric", True))
    layers: list[dict[str, WeightSpec | None]] = [dict() for _ in range(spec.n_layers)]
    canonical: dict[str, str] = {}
    fallbacks: dict[str, int] = {}
    for t in spec.tensors:
        if t.role not in LINEAR_ROLES:
            fmt = plan.tensor_formats.get(t.canonical, "F16")
            if fmt not in FLOAT_FORMATS:
                raise BadInput(f"{t.canonical} ({t.role.value}) is planned as {fmt}",
                               "these backends quantize decoder linears only; keep it F16")
            continue
        if t.role not in LAYER_MODULES or t.layer is None:
            raise BadInput(f"{t.canonical}: role {t.role.value} is not supported by the HF int "
                           "backends", "use a model with separate q/k/v and gate/up weights")
        fmt = plan.tensor_formats.get(t.canonical, "F16")
        s: WeightSpec | None = None
        if fmt in FLOAT_FORMATS:
            pass
        elif fmt not in formats:
            raise BadInput(f"{t.canonical} is planned as {fmt}; backend {plan.backend} does not "
                           "write it", f"use one of {', '.join([*formats, *FLOAT_FORMATS])}")
        elif fmt in INT_BITS:
            g = group_for(int(t.shape[-1]), group)  # vLLM's grouped kernels need whole groups
            if g != group:
                fallbacks[t.canonical] = g
            s = IntSpec(INT_BITS[fmt], g, sym)
        elif fmt == "W8A8-INT8":
            if not sym:  # vLLM's W8A8 int kernels take symmetric per-channel weights only
                raise BadInput(f"{t.canonical}: W8A8-INT8 weights are symmetric",
                               "drop the symmetric=false plan option")
            s = IntSpec(8, -1, True)
        elif fmt == "W8A8-FP8":
            s = Fp8Spec(per_channel=True)  # llm-compressor's FP8_DYNAMIC weights
        else:
            raise BadInput(f"{t.canonical} is planned as {fmt}",
                           f"use one of {', '.join([*formats, *FLOAT_FORMATS])}")
        mod = LAYER_MODULES[t.role]
        layers[t.layer][mod] = s
        canonical[f"model.layers.{t.layer}.{mod}"] = t.canonical
    for i, layer in enumerate(layers):
        for fused in FUSED:
            got = {layer.get(m) for m in fused if m in layer}
            if len(got) > 1:
                raise BadInput(f"layer {i}: {', '.join(fused)} are planned in different "
                               "precisions",
                               "vLLM fuses them into one matrix; give them one format")
    return IntJob(tuple(layers), canonical, fallbacks)


def calibration_windows(model_dir: Path, options: QuantizeOptions) -> torch.Tensor:
    """Token windows [n, 512] of the calibration text, cut by the model's own tokenizer."""
    import transformers

    text = options.calib_text or default_calibration_text()
    n = int(options.extra.get("calib_windows", CALIB_WINDOWS))
    refuse_custom_code(model_dir)
    try:
        tok = transformers.AutoTokenizer.from_pretrained(str(model_dir), trust_remote_code=False)
    except (OSError, ValueError) as e:
        raise BadInput(f"{model_dir} has no usable tokenizer for calibration "
                       f"({e.__class__.__name__})",
                       "add the tokenizer files (tokenizer.json, tokenizer_config.json)") from None
    ids = tok(text, add_special_tokens=False)["input_ids"]
    have = len(ids) // CALIB_TOKENS
    if have == 0:
        raise BadInput(f"the calibration text has {len(ids)} tokens; one window needs "
                       f"{CALIB_TOKENS}", "pass a longer --calib-text")
    n = min(n, have) if n > 0 else have
    return torch.tensor(ids[:n * CALIB_TOKENS]).reshape(n, CALIB_TOKENS)


def linear(layer: torch.nn.Module, path: str) -> torch.nn.Linear:
    mod = layer.get_submodule(path)
    assert isinstance(mod, torch.nn.Linear)
    return mod


def run_capturing_inputs(layer: torch.nn.Module, acts: Activations, paths: list[str],
                         on_input: Callable[[str, torch.Tensor], None]) -> torch.Tensor:
    """Run `layer` over the calibration activations, calling `on_input(path, x)` with the input
    of each linear in `paths` as it is computed; return the layer's outputs."""
    handles = []
    for path in paths:
        def hook(_: torch.nn.Module, args: tuple[torch.Tensor, ...], path: str = path) -> None:
            on_input(path, args[0].detach())

        handles.append(linear(layer, path).register_forward_pre_hook(hook))
    try:
        return acts.run(layer)
    finally:
        for hd in handles:
            hd.remove()


class LayerWriter(Protocol):
    """Where streamed layers go: float tensors and quantized linears, by checkpoint name."""

    def add(self, floats: dict[str, torch.Tensor], quantized: dict[str, Any]) -> None: ...


def write_streamed(src: Path, tokens: torch.Tensor | None,
                   quantize_layer: Callable[[int, torch.nn.Module, Activations], dict[str, Any]],
                   writer: LayerWriter, options: QuantizeOptions, *, propagate: bool = True,
                   name: str = "hf") -> tuple[float, dict[str, Any]]:
    """The layer-streamed quantize loop every HF backend shares: one decoder layer of float
    weights at a time (backends.hf.stream), `quantize_layer(i, layer, acts)` returns its
    quantized linears by module path (the others stay float), then the tensors outside the
    decoder layers. Returns the seconds it took and the measured peak memory while it ran."""
    from backends.hf import torch_threads
    from backends.hf.stream import read_tensors, stream_layers, track_peak_rss, weight_index

    t0 = time.perf_counter()
    with torch_threads(options.threads), track_peak_rss() as mem:
        def per_layer(i: int, layer: torch.nn.Module, acts: Activations) -> None:
            quantized = quantize_layer(i, layer, acts)
            skip = {f"{m}.weight" for m in quantized}
            floats = {f"model.layers.{i}.{n}": p.data for n, p in layer.named_parameters()
                      if n not in skip}
            writer.add(floats, {f"model.layers.{i}.{m}": q for m, q in quantized.items()})

        stream_layers(src, tokens, per_layer, propagate=propagate,
                      on_progress=options.extra.get("on_progress"))
        index = weight_index(src)
        writer.add(read_tensors(index, [n for n in index if not n.startswith("model.layers.")]),
                   {})
    seconds = time.perf_counter() - t0
    log.info("%s wrote its checkpoint in %.1f s (peak RSS +%.0f MiB)", name, seconds,
             mem.added / 2**20)
    return seconds, mem.figure("peak RSS while the layers streamed")


class HfQuantBackend(Generic[S]):
    """Base of the compressed-tensors checkpoint backends; `S` is the weight spec type
    `quantize_layer` receives."""

    name = "hf"
    spec_type: type[S]
    needs_calibration = False
    propagate_quantized = True  # next layer's inputs from the quantized layer's outputs

    def quantize_layer(self, index: int, layer: torch.nn.Module, acts: Activations,
                       specs: dict[str, S | None],
                       options: QuantizeOptions) -> dict[str, QuantizedLinear]:
        raise NotImplementedError

    def written_options(self, plan: QuantPlan, job: IntJob,
                        options: QuantizeOptions) -> dict[str, Any]:
        """Backend-specific entries of the written plan's options."""
        return {}

    @property
    def formats(self) -> tuple[str, ...]:
        """The plan formats this backend writes: its declaration in backends/__init__.py."""
        from backends.registry import schemes_of

        return schemes_of(self.name)

    @property
    def served_scheme(self) -> str:
        """What serves_on gates with (backends.hf.serve.serves_scheme): its first format."""
        return self.formats[0]

    def _specs(self, layer: dict[str, WeightSpec | None]) -> dict[str, S | None]:
        out: dict[str, S | None] = {}
        for path, spec in layer.items():
            if spec is not None and not isinstance(spec, self.spec_type):
                raise TypeError(f"{self.name} quantizes {self.spec_type.__name__} weights; "
                                f"{path} got {spec!r}")
            out[path] = spec
        return out

    def available(self) -> Support:
        try:
            import compressed_tensors
            import transformers
        except ImportError as e:
            return Support(False, f"{e.name} not installed: pip install compressed-tensors "
                                  "transformers")
        return Support(True, f"compressed-tensors {compressed_tensors.__version__}, "
                             f"transformers {transformers.__version__}")

    def serves_on(self, hw: HardwareProfile) -> Support:
        from backends.hf.serve import serves_scheme

        return serves_scheme(self.served_scheme, hw)

    def quantize(self, spec: ModelSpec, plan: QuantPlan, out_dir: Path,
                 options: QuantizeOptions) -> QuantPlan:
        from backends.hf.source import float_source

        if plan.backend != self.name:
            raise BadInput(f"plan {plan.label or plan.digest()} is for backend {plan.backend!r}",
                           f"give the {self.name} backend a {'/'.join(self.formats)} plan")
        job = plan_job(spec, plan, self.formats)
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        src = float_source(spec)
        tokens = calibration_windows(src, options) if self.needs_calibration else None
        torch.manual_seed(options.seed)
        # the plan's options (a --plan file's `damp`, `iters`, ...) reach the quantizer
        options = replace(options, extra={**plan.options, **options.extra})
        seconds, memory, qcfg = self.write(src, job, tokens, Path(out_dir), options)
        opts: dict[str, Any] = {
            **plan.options,
            **self.written_options(plan, job, options),
            "format": qcfg["format"],
            "quantize_seconds": round(seconds, 2),
            "peak_memory": memory,
        }
        if tokens is not None:
            opts["calibration"] = {"windows": int(tokens.shape[0]),
                                   "tokens_per_window": int(tokens.shape[1])}
        return QuantPlan(self.name, dict(plan.tensor_formats), options=opts, label=plan.label)

    def write(self, src: Path, job: IntJob, tokens: torch.Tensor | None, out_dir: Path,
              options: QuantizeOptions) -> tuple[float, dict[str, Any], dict[str, Any]]:
        """Write the checkpoint of `job` into `out_dir`: (seconds, peak memory, the
        quantization_config written). Here the project's layer-streamed loop with
        `quantize_layer`; a backend built on a library replaces it."""
        from backends.hf.writer import CheckpointWriter

        writer = CheckpointWriter(out_dir, len(job.layers) + 1)

        def per_layer(i: int, layer: torch.nn.Module,
                      acts: Activations) -> dict[str, QuantizedLinear]:
            return self.quantize_layer(i, layer, acts, self._specs(job.layers[i]), options)

        seconds, memory = write_streamed(src, tokens, per_layer, writer, options,
                                         propagate=self.propagate_quantized, name=self.name)
        return seconds, memory, writer.finish(src, job.float_linears())

    def load(self, artifact_dir: Path, n_ctx: int = 2048, threads: int = 0) -> Runner:
        from backends.hf.runner import HfRunner

        return HfRunner(Path(artifact_dir), threads=threads)

    def serve_files(self, artifact_dir: Path, plan: QuantPlan, hw: HardwareProfile,
                    serving: Serving) -> dict[str, str]:
        from backends.hf.serve import serve_files

        return serve_files(serving)


class HfIntBackend(HfQuantBackend[IntSpec]):
    """Base of rtn / gptq / awq: integer weights (W4A16/W8A16), 16-bit activations."""

    name = "hf-int"
    spec_type = IntSpec

    def written_options(self, plan: QuantPlan, job: IntJob,
                        options: QuantizeOptions) -> dict[str, Any]:
        return {"group_size": int(plan.options.get("group_size", DEFAULT_GROUP)),
                "symmetric": bool(plan.options.get("symmetric", True)),
                "fallbacks": job.fallbacks}
