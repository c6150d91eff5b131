"""Read a Hugging Face directory (config.json + *.safetensors headers) into a ModelSpec.

Only headers are read (safetensors' `safe_open` parses the JSON header; `get_slice` gives shapes
without touching tensor data). Pickle checkpoints are refused: they execute code when loaded;
so is a directory whose configs carry `auto_map` (custom code), see advisor/inspect/untrusted.py.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from advisor.errors import BadInput
from advisor.inspect.from_config import CONFIG_ONLY, config_dtype, config_tensors, head_dim
from advisor.inspect.roles import role_of
from advisor.inspect.untrusted import (
    checkpoint_pickles,
    read_json_object,
    refuse_custom_code,
    regular_file,
)
from advisor.modelspec import ModelSpec, SourceFormat, TensorInfo

# transformers architecture class -> llama.cpp architecture (gguf-py MODEL_ARCH names).
# Mistral is converted as llama by llama.cpp's convert_hf_to_gguf.py.
HF_ARCHITECTURES = {
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "llama",
    "Qwen2ForCausalLM": "qwen2",
    "Qwen3ForCausalLM": "qwen3",
    "GemmaForCausalLM": "gemma",
    "Gemma2ForCausalLM": "gemma2",
}

_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I8": 1, "U8": 1, "I16": 2, "I32": 4,
                "I64": 8, "F8_E4M3": 1, "F8_E5M2": 1, "BOOL": 1}
_REQUIRED = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
             "vocab_size")
_OPTIONAL = ("num_key_value_heads", "head_dim", "max_position_embeddings", "num_local_experts",
             "num_experts")


def _config(d: Path) -> dict[str, Any]:
    path = d / "config.json"
    if not regular_file(path, "config.json"):
        raise BadInput(f"{d} has no config.json", "pass a Hugging Face model directory or a .gguf")
    cfg = read_json_object(path)
    for key in _REQUIRED:
        if not _positive_int(cfg.get(key)):
            raise BadInput(f"{path} has no valid {key!r}", "restore the model's config.json")
    for key in _OPTIONAL:  # optional, but when present a positive integer
        if cfg.get(key) is not None and not _positive_int(cfg[key]):
            raise BadInput(f"{path}: {key!r} is {cfg[key]!r}, not a positive integer",
                           "restore the model's config.json")
    return cfg


def _positive_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 < v < _MAX_DIM


_MAX_DIM = 1 << 31  # beyond any real model; a lying config must not size loops (layer maps)
_MAX_LAYERS = 4096


def _arch(cfg: dict[str, Any], where: Path) -> tuple[str, str]:
    archs = cfg.get("architectures") or []
    if not isinstance(archs, list):
        archs = [archs]
    for a in archs:
        if not isinstance(a, str):
            continue
        if a in HF_ARCHITECTURES:
            return a, HF_ARCHITECTURES[a]
    known = ", ".join(sorted(HF_ARCHITECTURES))
    raise BadInput(
        f"{where}/config.json: unsupported architecture {archs or cfg.get('model_type')!r}",
        f"supported: {known}",
    )


def _canonical_map(arch: str, n_layers: int) -> Any:
    import gguf

    return gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch.upper()], n_layers)


def _headers(files: list[Path]) -> list[tuple[str, tuple[int, ...], str]]:
    from safetensors import SafetensorError, safe_open

    out = []
    for f in files:
        try:
            with safe_open(str(f), framework="pt") as st:
                for key in st.keys():
                    sl = st.get_slice(key)
                    out.append((key, tuple(int(s) for s in sl.get_shape()), sl.get_dtype()))
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            if len(msg) > 160:  # e.g. serde's "unknown variant `Q9`, expected one of <22 dtypes>"
                msg = msg[:157] + "..."
            raise BadInput(
                f"{f} is not a readable safetensors file ({msg})",
                "the file is truncated or corrupt; download it again",
            ) from None
    return out


def weight_files(d: Path) -> list[Path]:
    """The safetensors files that hold the model: those of the weight index when there is one
    (a directory may also hold e.g. Mistral's consolidated.safetensors), else model*.safetensors,
    else every *.safetensors."""
    index = d / "model.safetensors.index.json"
    if regular_file(index):
        try:
            names = sorted(set(read_json_object(index)["weight_map"].values()))
            if not all(isinstance(n, str) for n in names):
                raise TypeError
        except (BadInput, KeyError, TypeError, AttributeError):
            raise BadInput(f"{index} is not a valid weight index",
                           "restore it or remove it") from None
        for n in names:  # text from the file: a shard name, never a path out of the directory
            if not n or Path(n).is_absolute() or ".." in Path(n).parts or "\0" in n:
                raise BadInput(f"{index} names {n[:80]!r}, a file outside the model directory",
                               "restore the index: every shard lies in the directory itself")
        missing = [n for n in names if not regular_file(d / n)]
        if missing:
            raise BadInput(f"{d} lacks {missing[0]} named by its weight index",
                           "download every shard")
        return [d / n for n in names]
    files = sorted(d.glob("model*.safetensors")) or sorted(d.glob("*.safetensors"))
    for f in files:
        regular_file(f, "weights")  # a FIFO would block, a device never end: refused
    return files


def read_hf_dir(d: Path, *, weights: bool = True) -> ModelSpec:
    """The spec of directory `d` from its headers. A directory with config.json and no weights
    (plan before download, advisor.inspect.from_config) is read when `weights` is False, and
    refused with the fix otherwise."""
    refuse_custom_code(d)  # first: nothing below may hand a directory with auto_map onward
    pickles = checkpoint_pickles(d)
    files = weight_files(d)
    config_only = not files and not pickles and regular_file(d / "config.json")
    if config_only and weights:
        raise BadInput(f"{d} holds config.json but no weights (*.safetensors)",
                       "download them into it (huggingface-cli download <id> --local-dir <it>); "
                       "`advisor inspect` and `estimate` size a model from config.json alone")
    if not files and not config_only:
        if pickles:
            raise BadInput(
                f"{d} holds only pickle checkpoints ({', '.join(pickles[:3])}), which run code "
                "when loaded and are refused",
                "convert them to safetensors (e.g. `model.save_pretrained(dir, "
                "safe_serialization=True)` in a sandbox) and pass that directory",
            )
        raise BadInput(f"{d} has no *.safetensors files", "pass a Hugging Face model directory")
    cfg = _config(d)
    hf_arch, arch = _arch(cfg, d)
    n_layers = int(cfg["num_hidden_layers"])
    if n_layers > _MAX_LAYERS:
        raise BadInput(f"{d}/config.json: num_hidden_layers {n_layers} is not plausible "
                       f"(more than {_MAX_LAYERS})", "restore the model's config.json")
    tmap = _canonical_map(arch, n_layers)
    tensors = []
    if config_only:
        dtype = config_dtype(cfg)
        listed = [(key, shape, dtype) for key, shape in config_tensors(cfg, arch)]
    else:
        listed = _headers(files)
    for key, shape, dtype in listed:
        canonical = tmap.get_name(key, try_suffixes=(".weight", ".bias"))
        if canonical is None:
            canonical = key
        if 0 in shape:
            raise BadInput(f"{d}: tensor {key[:80]!r} has shape {list(shape)}, with no elements",
                           "the weights are corrupt; download them again")
        role, layer = role_of(canonical, len(shape))
        nbytes = math.prod(shape) * _DTYPE_BYTES.get(dtype, 4)
        tensors.append(TensorInfo(name=key, canonical=canonical, role=role, layer=layer,
                                  shape=shape, dtype=dtype, nbytes=nbytes))
    n_heads = int(cfg["num_attention_heads"])
    has_lm_head = any(t.canonical == "output.weight" for t in tensors)
    return ModelSpec(
        path=str(d),
        format=SourceFormat.HF,
        architecture=arch,
        name=str(cfg.get("_name_or_path") or d.name),
        hidden_size=int(cfg["hidden_size"]),
        intermediate_size=int(cfg["intermediate_size"]),
        n_layers=n_layers,
        n_heads=n_heads,
        n_kv_heads=int(cfg.get("num_key_value_heads") or n_heads),
        head_dim=head_dim(cfg, arch),
        vocab_size=int(cfg["vocab_size"]),
        context_length=int(cfg.get("max_position_embeddings") or 2048),
        tied_embeddings=not has_lm_head,
        tensors=tuple(tensors),
        extra={"hf_architecture": hf_arch, "torch_dtype": cfg.get("torch_dtype"),
               "n_expert": int(cfg.get("num_local_experts") or cfg.get("num_experts") or 0)}
        | ({"weights": CONFIG_ONLY} if config_only else {}),
    )
