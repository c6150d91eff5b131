"""NF4 weights (bitsandbytes, QLoRA's 4-bit NormalFloat) written as the pre-quantized checkpoint
transformers itself saves for a `load_in_4bit` model, layer-streamed; served by vLLM
(`--quantization bitsandbytes`) and loaded by plain `from_pretrained` with bitsandbytes installed.

The layout, read from transformers 5 (quantizers/quantizer_bnb_4bit.py `serialized_names`,
integrations/bitsandbytes.py `Bnb4bitDeserialize`) and bitsandbytes 0.50 (`Linear4bit.
_save_to_state_dict`, `QuantState.as_dict(packed=True)`), and checked against a tiny model that
transformers quantized and saved itself (tests/backends/test_hf_nf4.py), per quantized linear:

- `weight`: uint8 [ceil(numel / 2), 1], two NF4 codes a byte (kernels/nf4.py);
- `weight.absmax`: uint8 [blocks of 64], the double-quantized block scales;
- `weight.quant_map`: float32 [16], the NF4 levels;
- `weight.nested_absmax`: float32 [ceil(blocks / 256)]; `weight.nested_quant_map`: float32
  [256], the 8-bit dynamic code;
- `weight.quant_state.bitsandbytes__nf4`: uint8, the JSON of the non-tensor state (quant_type,
  blocksize, dtype, shape, nested_blocksize, nested_dtype, nested_offset) in bitsandbytes' key
  order.

`config.json` gets transformers' `BitsAndBytesConfig` dict: quant_method "bitsandbytes",
load_in_4bit, nf4, double quantization, compute dtype float16. Decoder linears only: embeddings,
norms and the LM head stay float16; a linear the plan keeps in F16 is listed in
`llm_int8_skip_modules` (with the LM head, which transformers skips by default only when that
list is absent). Weights are rounded to float16 before quantizing, as transformers does when it
quantizes the float16 checkpoint at load time, so the two write the same bytes. No calibration.

Measuring on the CPU: transformers keeps the checkpoint's float16 for the unquantized tensors of
a pre-quantized bitsandbytes model whatever `dtype` it is given, and `Linear4bit` casts its input
to `bnb_4bit_compute_dtype`; `load` turns both to float32 so the CPU measurement, like the other
HF backends', is free of float16 rounding (the weights are the NF4 values exactly).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from importlib import metadata, util
from pathlib import Path
from typing import Any

import torch

from advisor.artifact.serving import Serving
from advisor.errors import BadInput
from advisor.hardware import HardwareProfile
from advisor.modelspec import LINEAR_ROLES, ModelSpec
from advisor.plan import QuantPlan
from backends.base import QuantizeOptions, Runner, Support
from backends.hf.base import FLOAT_FORMATS, FUSED, LAYER_MODULES
from backends.hf.writer import write_checkpoint_files
from backends.registry import register
from kernels.nf4 import BLOCKSIZE, NESTED_BLOCKSIZE, Nf4Weight, nf4_code, quantize_nf4

log = logging.getLogger(__name__)

SCHEME = "NF4"
FORMAT = "bitsandbytes-nf4"
CHECKPOINT_DTYPE = torch.float16
COMPUTE_DTYPE = "float16"  # bnb_4bit_compute_dtype: what Linear4bit computes in on a GPU
# vLLM fuses these into one module; its skip check matches module prefixes, so a float linear
# in a fused group is also listed under the fused name (transformers ignores names it lacks).
_FUSED_NAMES = {FUSED[0]: "self_attn.qkv_proj", FUSED[1]: "mlp.gate_up_proj"}


@dataclass(frozen=True)
class Nf4Job:
    """Per decoder layer: module path -> quantized (True) or kept float16 (False)."""

    layers: tuple[dict[str, bool], ...]

    def skip_modules(self) -> list[str]:
        """`llm_int8_skip_modules`: the LM head and every float linear ([] if none is)."""
        out: list[str] = []
        for i, layer in enumerate(self.layers):
            floats = [m for m, q in layer.items() if not q]
            out += [f"model.layers.{i}.{m}" for m in floats]
            out += [f"model.layers.{i}.{name}" for group, name in _FUSED_NAMES.items()
                    if any(m in floats for m in group)]
        return ["lm_head", *out] if out else []


def plan_job(spec: ModelSpec, plan: QuantPlan) -> Nf4Job:
    """Validate an NF4 plan against the model: decoder linears NF4 or F16, the rest float."""
    layers: list[dict[str, bool]] = [dict() for _ in range(spec.n_layers)]
    for t in spec.tensors:
        fmt = plan.tensor_formats.get(t.canonical, "F16")
        if t.role not in LINEAR_ROLES:
            if fmt not in FLOAT_FORMATS:
                raise BadInput(f"{t.canonical} ({t.role.value}) is planned as {fmt}",
                               "the nf4 backend quantizes decoder linears only; keep it F16")
            continue
        if t.role not in LAYER_MODULES or t.layer is None:
            raise BadInput(f"{t.canonical}: role {t.role.value} is not supported by the nf4 "
                           "backend", "use a model with separate q/k/v and gate/up weights")
        if fmt != SCHEME and fmt not in FLOAT_FORMATS:
            raise BadInput(f"{t.canonical} is planned as {fmt}",
                           f"the nf4 backend writes {SCHEME} or keeps F16")
        layers[t.layer][LAYER_MODULES[t.role]] = fmt == SCHEME
    for i, layer in enumerate(layers):
        for group in FUSED:
            if len({layer[m] for m in group if m in layer}) > 1:
                raise BadInput(f"layer {i}: {', '.join(group)} are planned in different "
                               "precisions",
                               "vLLM fuses them into one matrix; give them one format")
    return Nf4Job(tuple(layers))


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def linear_tensors(module: str, w: Nf4Weight) -> dict[str, torch.Tensor]:
    """The six checkpoint tensors of one quantized linear (`QuantState.as_dict(packed=True)`)."""
    if w.nested is None:
        raise ValueError("the nf4 checkpoint is written with double quantization")
    state = {"quant_type": "nf4", "blocksize": w.blocksize, "dtype": _dtype_name(w.dtype),
             "shape": list(w.shape), "nested_blocksize": w.nested.blocksize,
             "nested_dtype": _dtype_name(w.nested.absmax.dtype),
             "nested_offset": w.nested.offset.item()}
    blob = torch.tensor(list(json.dumps(state).encode("utf-8")), dtype=torch.uint8)
    p = f"{module}.weight"
    return {p: w.packed, f"{p}.absmax": w.absmax, f"{p}.quant_map": nf4_code(),
            f"{p}.nested_absmax": w.nested.absmax, f"{p}.nested_quant_map": w.nested.code,
            f"{p}.quant_state.bitsandbytes__nf4": blob}


def quantization_config(skip_modules: list[str]) -> dict[str, Any]:
    """config.json's `quantization_config`, as transformers' BitsAndBytesConfig.to_dict()."""
    return {
        "_load_in_4bit": True, "_load_in_8bit": False,
        "bnb_4bit_compute_dtype": COMPUTE_DTYPE, "bnb_4bit_quant_storage": "uint8",
        "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": True,
        "llm_int8_enable_fp32_cpu_offload": False, "llm_int8_has_fp16_weight": False,
        "llm_int8_skip_modules": skip_modules or None, "llm_int8_threshold": 6.0,
        "load_in_4bit": True, "load_in_8bit": False, "quant_method": "bitsandbytes",
    }


class Nf4Writer:
    """Shards written as layers complete (float tensors in float16, NF4 tensors as they are);
    `finish` writes the index, config.json and the tokenizer files."""

    def __init__(self, out_dir: Path, n_shards: int) -> None:
        self.out_dir = Path(out_dir)
        self.n_shards = n_shards
        self.written = 0
        self.weight_map: dict[str, str] = {}
        self.total_bytes = 0

    def add(self, floats: dict[str, torch.Tensor], quantized: dict[str, Nf4Weight]) -> None:
        from safetensors.torch import save_file

        state = {k: v.detach().to(CHECKPOINT_DTYPE).contiguous() if v.is_floating_point()
                 else v.contiguous() for k, v in floats.items()}
        for module, w in quantized.items():
            state.update(linear_tensors(module, w))
        if self.written == self.n_shards:
            raise ValueError(f"more than the {self.n_shards} announced shards")
        self.written += 1
        name = f"model-{self.written:05d}-of-{self.n_shards:05d}.safetensors"
        save_file(state, str(self.out_dir / name), metadata={"format": "pt"})
        self.total_bytes += sum(t.numel() * t.element_size() for t in state.values())
        self.weight_map.update({k: name for k in state})

    def finish(self, source_dir: Path, skip_modules: list[str]) -> dict[str, Any]:
        if self.written != self.n_shards:
            raise ValueError(f"{self.written} shards written, {self.n_shards} announced")
        qcfg = quantization_config(skip_modules)
        write_checkpoint_files(self.out_dir, source_dir, self.weight_map, self.total_bytes, qcfg,
                               dtype=_dtype_name(CHECKPOINT_DTYPE))
        return qcfg


def compute_in_float32(model: torch.nn.Module) -> None:
    """A loaded bitsandbytes model computing in float32 on the CPU: unquantized parameters and
    buffers to float32, every Linear4bit's compute dtype float32 (it dequantizes to its input's
    dtype, so the NF4 values are used exactly) and its bfloat16 CPU kernel off."""
    import bitsandbytes as bnb

    for mod in model.modules():
        if isinstance(mod, bnb.nn.Linear4bit):
            mod.compute_dtype = torch.float32
            mod.compute_type_is_set = True
            # on AVX512-BF16 CPUs bitsandbytes would repack the weight for a bfloat16 kernel
            mod.support_avx512bf16_for_cpu = False
    for t in [*model.parameters(), *model.buffers()]:
        if t.is_floating_point() and t.dtype != torch.float32:
            t.data = t.data.float()


def serve_script(serving: Serving) -> str:
    """vLLM's server for a pre-quantized bitsandbytes NF4 checkpoint (vLLM reads quant_method
    "bitsandbytes" from config.json; --load-format is implied by --quantization from vLLM 0.7
    on, older releases need it). vLLM does not shard pre-quantized bitsandbytes weights across
    GPUs: use --pipeline-parallel-size, not --tensor-parallel-size."""
    from backends.hf.serve import serve_script as vllm_script

    return vllm_script(serving, COMPUTE_DTYPE,
                       " --quantization bitsandbytes --load-format bitsandbytes")


def transformers_snippet() -> str:
    return (
        '"""Load this checkpoint with transformers (pip install transformers accelerate '
        'bitsandbytes).\nbitsandbytes computes in float16 on a CUDA GPU; on a CPU it runs, '
        'slowly."""\n'
        "from pathlib import Path\n\n"
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
        "here = Path(__file__).resolve().parent\n"
        "model = AutoModelForCausalLM.from_pretrained(here, trust_remote_code=False)\n"
        "tok = AutoTokenizer.from_pretrained(here, trust_remote_code=False)\n"
        'ids = tok("The capital of France is", return_tensors="pt").to(model.device)\n'
        "print(tok.decode(model.generate(**ids, max_new_tokens=16)[0]))\n"
    )


@register("nf4")
class Nf4Backend:
    """bitsandbytes NF4 checkpoints, double-quantized scales, blocks of 64; no calibration."""

    name = "nf4"

    def available(self) -> Support:
        missing = [m for m in ("bitsandbytes", "transformers", "accelerate")
                   if util.find_spec(m) is None]
        if missing:
            return Support(False, f"{', '.join(missing)} not installed: pip install "
                                  f"{' '.join(missing)}")
        return Support(True, f"bitsandbytes {metadata.version('bitsandbytes')}, "
                             f"transformers {metadata.version('transformers')}")

    def serves_on(self, hw: HardwareProfile) -> Support:
        from backends.hf.serve import serves_scheme

        return serves_scheme(SCHEME, hw)

    def quantize(self, spec: ModelSpec, plan: QuantPlan, out_dir: Path,
                 options: QuantizeOptions) -> QuantPlan:
        from backends.hf.base import linear, write_streamed
        from backends.hf.source import float_source
        from backends.hf.stream import Activations

        if plan.backend != self.name:
            raise BadInput(f"plan {plan.label or plan.digest()} is for backend {plan.backend!r}",
                           f"give the {self.name} backend an {SCHEME} plan")
        job = plan_job(spec, plan)
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        src = float_source(spec)
        writer = Nf4Writer(out_dir, spec.n_layers + 1)

        def per_layer(i: int, layer: torch.nn.Module, _: Activations) -> dict[str, Nf4Weight]:
            return {m: quantize_nf4(linear(layer, m).weight.data.to(CHECKPOINT_DTYPE))
                    for m, q in job.layers[i].items() if q}

        seconds, memory = write_streamed(src, None, per_layer, writer, options, name=self.name)
        qcfg = writer.finish(src, job.skip_modules())
        opts: dict[str, Any] = {
            **plan.options,
            "format": FORMAT,
            "blocksize": BLOCKSIZE,
            "double_quant": True,
            "nested_blocksize": NESTED_BLOCKSIZE,
            "compute_dtype": qcfg["bnb_4bit_compute_dtype"],
            "quantize_seconds": round(seconds, 2),
            "peak_memory": memory,
        }
        return QuantPlan(self.name, dict(plan.tensor_formats), options=opts, label=plan.label)

    def load(self, artifact_dir: Path, n_ctx: int = 2048, threads: int = 0) -> Runner:
        from backends.hf.runner import HfRunner

        runner = HfRunner(Path(artifact_dir), threads=threads)
        compute_in_float32(runner.model)
        return runner

    def serve_files(self, artifact_dir: Path, plan: QuantPlan, hw: HardwareProfile,
                    serving: Serving) -> dict[str, str]:
        from backends.hf.serve import SERVE_SCRIPT, SNIPPET

        return {SERVE_SCRIPT: serve_script(serving), SNIPPET: transformers_snippet()}
