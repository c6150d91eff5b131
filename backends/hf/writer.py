"""Writes a Hugging Face checkpoint in the compressed-tensors format, one shard per decoder layer.

Each quantized linear goes through the compressed-tensors compressor of its scheme, chosen by the
library's own `infer_module_format` (the one llm-compressor calls when it saves):
- weight-only integers (W4A16/W8A16): `pack-quantized`: int32 `weight_packed`, 16-bit
  `weight_scale`, packed `weight_zero_point` for asymmetric schemes, `weight_shape`;
- int8 weights with dynamic int8 inputs (W8A8-INT8): `int-quantized`: int8 `weight`, 16-bit
  `weight_scale` [out, 1];
- FP8 weights with dynamic FP8 inputs (W8A8-FP8, llm-compressor's FP8_DYNAMIC): `float-quantized`:
  float8_e4m3fn `weight`, float32 `weight_scale` [out, 1] (vLLM keeps FP8 scales in float32).
Dynamic input quantization has no stored tensors: the config says `input_activations` with
`dynamic: true, strategy: token` and vLLM quantizes each token before the GEMM.

`config.json` gets the `quantization_config` that vLLM serves and transformers loads, written as
compressed-tensors' `ModelCompressor.update_config` writes it. One config group per distinct
scheme (with its `format`; the top-level format is that format, or `mixed-precision`), targeting
its modules by exact name (or every `Linear` when one scheme covers all of them); the LM head and
any linear left in float are in `ignore`.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import torch

from kernels import fp8
from kernels.affine import IntSpec, dequantize
from kernels.fp8 import Fp8Spec

CHECKPOINT_DTYPE = torch.float16
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                    "tokenizer.model", "chat_template.jinja", "generation_config.json",
                    "vocab.json", "merges.txt")

WeightSpec = IntSpec | Fp8Spec  # what a quantized linear's weights are stored as


class InputQuant(str, Enum):
    """Dynamic per-token quantization of a linear's inputs, done by the runtime before the GEMM
    (nothing stored)."""

    INT8 = "int8"
    """symmetric int8 per token (W8A8-INT8)"""
    FP8 = "fp8"
    """float8_e4m3fn per token (W8A8-FP8)"""


@dataclass(frozen=True)
class LinearScheme:
    """How one linear is stored and served: its weight format and its input quantization."""

    weights: WeightSpec
    inputs: InputQuant | None = None

    def quantization_scheme(self, targets: list[str]) -> Any:
        """compressed-tensors' QuantizationScheme, with the format its compressor registry
        picks for it (`infer_module_format`, as llm-compressor does when it saves)."""
        from compressed_tensors.compressors.format import infer_module_format
        from compressed_tensors.quantization import QuantizationScheme

        scheme = QuantizationScheme(targets=targets, weights=weight_args(self.weights),
                                    input_activations=input_args(self.inputs))
        scheme.format = infer_module_format(torch.nn.Linear, scheme).value
        return scheme

    @property
    def format(self) -> str:
        """compressed-tensors format name: pack-quantized, int-quantized, float-quantized."""
        fmt: str = self.quantization_scheme(["Linear"]).format
        return fmt

    def sort_key(self) -> tuple[Any, ...]:
        w = self.weights
        kind = (0, w.bits, w.group_size, w.symmetric) if isinstance(w, IntSpec) else \
            (1, 8, -1 if w.per_channel else 0, True)
        return (*kind, self.inputs.value if self.inputs else "")


@dataclass(frozen=True)
class QuantizedLinear:
    """A linear's quantized weight and qparams as a quantizer produced them."""

    q: torch.Tensor  # int8 or float8_e4m3fn [out, in]
    scale: torch.Tensor  # float32 [out, groups] ([1] for a per-tensor FP8 scale)
    zero_point: torch.Tensor  # int8 [out, groups] (zeros when symmetric; not stored then)
    spec: WeightSpec
    inputs: InputQuant | None = None

    @property
    def scheme(self) -> LinearScheme:
        return LinearScheme(self.spec, self.inputs)

    def dequantized(self) -> torch.Tensor:
        """float32 weights [out, in]."""
        if isinstance(self.spec, Fp8Spec):
            return fp8.dequantize(self.q, self.scale)
        return dequantize(self.q, self.scale, self.zero_point)


def int_args(spec: IntSpec) -> Any:
    from compressed_tensors.quantization import QuantizationArgs

    if spec.group_size == -1:
        return QuantizationArgs(num_bits=spec.bits, type="int", symmetric=spec.symmetric,
                                strategy="channel")
    return QuantizationArgs(num_bits=spec.bits, type="int", symmetric=spec.symmetric,
                            strategy="group", group_size=spec.group_size)


def weight_args(spec: WeightSpec) -> Any:
    """QuantizationArgs of a weight format (FP8: llm-compressor's FP8_DYNAMIC weights)."""
    from compressed_tensors.quantization import QuantizationArgs

    if isinstance(spec, IntSpec):
        return int_args(spec)
    return QuantizationArgs(num_bits=8, type="float", symmetric=True, dynamic=False,
                            strategy="channel" if spec.per_channel else "tensor")


def input_args(inputs: InputQuant | None) -> Any:
    """QuantizationArgs of dynamic per-token inputs (compressed-tensors' INT8_W8A8 and
    FP8_DYNAMIC presets), None for 16-bit inputs."""
    from compressed_tensors.quantization import QuantizationArgs

    if inputs is None:
        return None
    return QuantizationArgs(num_bits=8, type="int" if inputs is InputQuant.INT8 else "float",
                            symmetric=True, dynamic=True, strategy="token")


def scale_dtype(spec: WeightSpec) -> torch.dtype:
    """Stored dtype of a weight scale: the checkpoint's 16-bit dtype for integers (what
    llm-compressor writes for a float16 model), float32 for FP8."""
    return fp8.SCALE_DTYPE if isinstance(spec, Fp8Spec) else CHECKPOINT_DTYPE


def compress_linear(lin: QuantizedLinear) -> dict[str, torch.Tensor]:
    """compressed-tensors' stored tensors (local names) of one quantized linear, from the
    compressor of its format. The compressor re-quantizes the dequantized weight with the same
    scales, which gives back the quantizer's codes exactly."""
    from compressed_tensors.compressors.base import BaseCompressor

    scheme = lin.scheme.quantization_scheme(["Linear"])
    compressor = BaseCompressor.get_value_from_registry(scheme.format)
    state = {"weight": lin.dequantized(),
             "weight_scale": lin.scale.to(scale_dtype(lin.spec)),
             "weight_zero_point": lin.zero_point}
    out: dict[str, torch.Tensor] = compressor.compress(state, scheme)
    return {k: v.contiguous() for k, v in out.items()}


class CheckpointWriter:
    """Shards written as layers complete; `finish` writes the index and config.json."""

    def __init__(self, out_dir: Path, n_shards: int) -> None:
        self.out_dir = Path(out_dir)
        self.n_shards = n_shards
        self._next = 1
        self.weight_map: dict[str, str] = {}
        self.schemes: dict[str, LinearScheme] = {}  # module name -> scheme
        self.total_bytes = 0

    def add(self, tensors: dict[str, torch.Tensor],
            quantized: dict[str, QuantizedLinear]) -> None:
        """One shard: float tensors (stored in float16) and quantized linears by module name."""
        from safetensors.torch import save_file

        state = {k: v.detach().to(CHECKPOINT_DTYPE).contiguous() if v.is_floating_point()
                 else v.contiguous() for k, v in tensors.items()}
        for module, lin in quantized.items():
            for k, v in compress_linear(lin).items():
                state[f"{module}.{k}"] = v
            self.schemes[module] = lin.scheme
        if self._next > self.n_shards:
            raise ValueError(f"more than the {self.n_shards} announced shards")
        name = f"model-{self._next:05d}-of-{self.n_shards:05d}.safetensors"
        self._next += 1
        save_file(state, str(self.out_dir / name), metadata={"format": "pt"})
        self.total_bytes += sum(t.numel() * t.element_size() for t in state.values())
        self.weight_map.update({k: name for k in state})

    def finish(self, source_dir: Path, float_linears: list[str]) -> dict[str, Any]:
        """Index, config.json with the quantization_config, tokenizer files; returns the
        quantization_config written."""
        if self._next - 1 != self.n_shards:
            raise ValueError(f"{self._next - 1} shards written, {self.n_shards} announced")
        qcfg = quantization_config(self.schemes, float_linears)
        write_checkpoint_files(self.out_dir, source_dir, self.weight_map, self.total_bytes, qcfg)
        return qcfg


def write_checkpoint_files(out_dir: Path, source_dir: Path, weight_map: dict[str, str],
                           total_bytes: int, qcfg: dict[str, Any],
                           dtype: str = "float16") -> None:
    """What every sharded HF checkpoint has besides its shards: the safetensors index,
    config.json (the source's, with `quantization_config` and the stored dtype) and the
    tokenizer files of the source."""
    index = {"metadata": {"total_size": total_bytes}, "weight_map": weight_map}
    (out_dir / "model.safetensors.index.json").write_text(
        json.dumps(index, indent=2, sort_keys=True) + "\n")
    cfg = json.loads((source_dir / "config.json").read_text())
    cfg["quantization_config"] = qcfg
    cfg["dtype"] = dtype
    cfg.pop("torch_dtype", None)
    (out_dir / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    copy_tokenizer_files(source_dir, out_dir)


def copy_tokenizer_files(source_dir: Path, out_dir: Path, *, keep: bool = False) -> None:
    """The tokenizer (and generation config) files of `source_dir` into `out_dir`; `keep`: a
    file a library already wrote there stays."""
    for f in _TOKENIZER_FILES:
        if (source_dir / f).is_file() and not (keep and (out_dir / f).exists()):
            shutil.copy2(source_dir / f, out_dir / f)


def quantization_config(schemes: dict[str, LinearScheme],
                        float_linears: list[str]) -> dict[str, Any]:
    """The compressed-tensors `quantization_config` of config.json."""
    import compressed_tensors
    from compressed_tensors.quantization import QuantizationConfig

    distinct = sorted(set(schemes.values()), key=LinearScheme.sort_key)
    groups = {}
    for i, scheme in enumerate(distinct):
        mods = sorted(m for m, s in schemes.items() if s == scheme)
        targets = ["Linear"] if len(distinct) == 1 and not float_linears else \
            [f"re:^{re.escape(m)}$" for m in mods]
        groups[f"group_{i}"] = scheme.quantization_scheme(targets)
    formats = {g.format for g in groups.values()}
    qc = QuantizationConfig(config_groups=groups,
                            format=formats.pop() if len(formats) == 1 else "mixed-precision",
                            quantization_status="compressed",
                            ignore=["lm_head", *sorted(float_linears)])
    body: dict[str, Any] = qc.model_dump(exclude={"quant_method"})
    return {"version": compressed_tensors.__version__, "quant_method": "compressed-tensors",
            "sparsity_config": {}, "transform_config": {}, **body}
