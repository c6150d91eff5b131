"""Writes a Hugging Face checkpoint in the compressed-tensors format, one shard per decoder layer.

Quantized linears go through compressed-tensors' own `pack-quantized` compressor (the one
llm-compressor calls when it saves: int32 `weight_packed`, 16-bit `weight_scale`, packed
`weight_zero_point` for asymmetric schemes, `weight_shape`), and `config.json` gets the
`quantization_config` that vLLM serves and transformers loads, written as compressed-tensors'
`ModelCompressor.update_config` writes it. One config group per distinct weight scheme, targeting
its modules by exact name (or every `Linear` when one scheme covers all of them); the LM head
and any linear left in float are in `ignore`.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from kernels.affine import IntSpec, dequantize

CHECKPOINT_DTYPE = torch.float16
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                    "tokenizer.model", "chat_template.jinja", "generation_config.json",
                    "vocab.json", "merges.txt")


@dataclass(frozen=True)
class QuantizedLinear:
    """A linear's integers and qparams as a quantizer produced them."""

    q: torch.Tensor  # int8 [out, in]
    scale: torch.Tensor  # float32 [out, groups]
    zero_point: torch.Tensor  # int8 [out, groups]
    spec: IntSpec


def int_args(spec: IntSpec) -> Any:
    from compressed_tensors.quantization import QuantizationArgs

    if spec.group_size == -1:
        return QuantizationArgs(num_bits=spec.bits, type="int", symmetric=spec.symmetric,
                                strategy="channel")
    return QuantizationArgs(num_bits=spec.bits, type="int", symmetric=spec.symmetric,
                            strategy="group", group_size=spec.group_size)


def compress_linear(lin: QuantizedLinear) -> dict[str, torch.Tensor]:
    """compressed-tensors' packed tensors (local names) of one quantized linear."""
    from compressed_tensors.compressors.pack_quantized.base import PackedQuantizationCompressor
    from compressed_tensors.quantization import QuantizationScheme

    scheme = QuantizationScheme(targets=["Linear"], weights=int_args(lin.spec))
    state = {"weight": dequantize(lin.q, lin.scale, lin.zero_point),
             "weight_scale": lin.scale.to(CHECKPOINT_DTYPE),
             "weight_zero_point": lin.zero_point}
    out: dict[str, torch.Tensor] = PackedQuantizationCompressor.compress(state, scheme)
    return {k: v.contiguous() for k, v in out.items()}


class CheckpointWriter:
    """Shards written as layers complete; `finish` writes the index and config.json."""

    def __init__(self, out_dir: Path, n_shards: int) -> None:
        self.out_dir = Path(out_dir)
        self.n_shards = n_shards
        self._next = 1
        self.weight_map: dict[str, str] = {}
        self.schemes: dict[str, IntSpec] = {}  # module name -> scheme
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
            self.schemes[module] = lin.spec
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
        index = {"metadata": {"total_size": self.total_bytes}, "weight_map": self.weight_map}
        (self.out_dir / "model.safetensors.index.json").write_text(
            json.dumps(index, indent=2, sort_keys=True) + "\n")
        cfg = json.loads((source_dir / "config.json").read_text())
        qcfg = quantization_config(self.schemes, float_linears)
        cfg["quantization_config"] = qcfg
        cfg["dtype"] = "float16"
        cfg.pop("torch_dtype", None)
        (self.out_dir / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
        for f in _TOKENIZER_FILES:
            if (source_dir / f).is_file():
                shutil.copy2(source_dir / f, self.out_dir / f)
        return qcfg


def quantization_config(schemes: dict[str, IntSpec], float_linears: list[str]) -> dict[str, Any]:
    """The compressed-tensors `quantization_config` of config.json."""
    import compressed_tensors
    from compressed_tensors.quantization import QuantizationConfig, QuantizationScheme

    distinct = sorted(set(schemes.values()), key=lambda s: (s.bits, s.group_size, s.symmetric))
    groups = {}
    for i, spec in enumerate(distinct):
        mods = sorted(m for m, s in schemes.items() if s == spec)
        targets = ["Linear"] if len(distinct) == 1 and not float_linears else \
            [f"re:^{re.escape(m)}$" for m in mods]
        groups[f"group_{i}"] = QuantizationScheme(targets=targets, weights=int_args(spec))
    qc = QuantizationConfig(config_groups=groups, format="pack-quantized",
                            quantization_status="compressed",
                            ignore=["lm_head", *sorted(float_linears)])
    body: dict[str, Any] = qc.model_dump(exclude={"quant_method"})
    return {"version": compressed_tensors.__version__, "quant_method": "compressed-tensors",
            "sparsity_config": {}, "transform_config": {}, **body}
