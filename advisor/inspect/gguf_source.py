"""Read a GGUF file's header into a ModelSpec (tensor data is never read)."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

from gguf import MODEL_ARCH_NAMES

from advisor.errors import BadInput
from advisor.inspect.gguf_header import GGUF_MAGIC, ArrayInfo, read_header
from advisor.inspect.roles import role_of
from advisor.modelspec import ModelSpec, Role, SourceFormat, TensorInfo


def read_gguf(path: Path) -> ModelSpec:
    """Build a ModelSpec from a GGUF file's header and tensor infos."""
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic != GGUF_MAGIC:
        raise BadInput(
            f"{path} is not a GGUF file (magic {magic!r}, expected b'GGUF')",
            "pass a .gguf model file or a Hugging Face directory",
        )
    try:
        header = read_header(path)
        kv = header.kv
        arch = kv.get("general.architecture")
        if not isinstance(arch, str):
            raise ValueError("general.architecture missing")
        if arch not in _LLAMA_CPP_ARCHS:
            raise BadInput(f"{path}: architecture {arch[:64]!r} is not one llama.cpp runs",
                           "pass a GGUF of a supported architecture (llama, qwen2, qwen3, "
                           "gemma2, ...: gguf-py's MODEL_ARCH_NAMES)")
        if not header.tensors:
            raise ValueError("the file holds no tensors")
        tensors = []
        for t in header.tensors:
            shape = tuple(reversed(t.ne))  # GGUF ne[0] is the row size: PyTorch order reverses it
            while len(shape) > 1 and shape[0] == 1:
                shape = shape[1:]
            role, layer = role_of(t.name, len(shape))
            tensors.append(
                TensorInfo(
                    name=t.name, canonical=t.name, role=role, layer=layer,
                    shape=shape, dtype=t.type.name, nbytes=t.nbytes,
                )
            )
        meta: dict[str, Any] = {
            "hidden_size": kv.get(f"{arch}.embedding_length"),
            "intermediate_size": kv.get(f"{arch}.feed_forward_length"),
            "n_layers": kv.get(f"{arch}.block_count"),
            "n_heads": kv.get(f"{arch}.attention.head_count"),
        }
        missing = [k for k, v in meta.items() if not _is_int(v) or v <= 0]
        if missing:
            raise ValueError(f"metadata lacks valid {', '.join(missing)}")
        n_heads = int(meta["n_heads"])
        n_kv = _int_kv(kv, f"{arch}.attention.head_count_kv", n_heads)
        head_dim = _int_kv(kv, f"{arch}.attention.key_length",
                           int(meta["hidden_size"]) // n_heads)
        _check_experts(kv, arch)
        tokens = kv.get("tokenizer.ggml.tokens")
        embd = next((t for t in tensors if t.role is Role.EMBEDDING), None)
        if isinstance(tokens, ArrayInfo):
            vocab = tokens.count
        elif isinstance(tokens, list):
            vocab = len(tokens)
        else:
            vocab = embd.shape[0] if embd else 0
        return _spec(path, kv, arch, meta, tensors, n_heads, n_kv, head_dim, vocab,
                     header.data_offset)
    except (ValueError, KeyError, IndexError, TypeError, OverflowError, OSError,
            struct.error) as e:
        raise BadInput(
            f"{path} is not a readable GGUF model ({type(e).__name__}: {e})",
            "the file is truncated or corrupt; download or convert it again",
        ) from None


# The architectures gguf-py names (MODEL_ARCH_NAMES, the list llama.cpp's converter and loader
# share): any other general.architecture makes llama.cpp fail with "unknown model architecture".
_LLAMA_CPP_ARCHS = frozenset(MODEL_ARCH_NAMES.values())


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _int_kv(kv: dict[str, Any], key: str, default: int) -> int:
    """Integer metadata `key` (`default` when absent); ValueError naming it otherwise."""
    v = kv.get(key, default)
    if not _is_int(v):
        raise ValueError(f"{key} is {str(v)[:40]!r}, not an integer")
    return int(v)


LLAMA_MAX_EXPERTS = 512  # llama.cpp src/llama-hparams.h


def _check_experts(kv: dict[str, Any], arch: str) -> None:
    """The expert counts llama.cpp asserts (GGML_ASSERT: the process aborts) in
    llama_model::load_hparams: 0 < used <= count <= LLAMA_MAX_EXPERTS, or both 0."""
    n = _int_kv(kv, f"{arch}.expert_count", 0)
    used = _int_kv(kv, f"{arch}.expert_used_count", 0)
    if not (0 <= n <= LLAMA_MAX_EXPERTS and (0 < used <= n if n else used == 0)):
        raise ValueError(f"{arch}.expert_count {n} with expert_used_count {used} (llama.cpp "
                         f"needs 0 < used <= count <= {LLAMA_MAX_EXPERTS}, or both 0)")


def _spec(path: Path, kv: dict[str, Any], arch: str, meta: dict[str, Any],
          tensors: list[TensorInfo], n_heads: int, n_kv: Any, head_dim: Any, vocab: int,
          data_offset: int) -> ModelSpec:
    """The ModelSpec; metadata of the wrong type (a string where a count belongs) raises
    ValueError/TypeError, which read_gguf turns into BadInput."""
    has_output = any(t.role is Role.LM_HEAD for t in tensors)
    return ModelSpec(
        path=str(path),
        format=SourceFormat.GGUF,
        architecture=arch,
        name=str(kv.get("general.name", path.stem)),
        hidden_size=int(meta["hidden_size"]),
        intermediate_size=int(meta["intermediate_size"]),
        n_layers=int(meta["n_layers"]),
        n_heads=n_heads,
        n_kv_heads=int(n_kv),
        head_dim=int(head_dim),
        vocab_size=int(vocab),
        context_length=_int_kv(kv, f"{arch}.context_length", 2048),
        tied_embeddings=not has_output,
        tensors=tuple(tensors),
        metadata_bytes=data_offset,
        extra={"file_type": kv.get("general.file_type"),
               "n_expert": _int_kv(kv, f"{arch}.expert_count", 0),
               "chat_template": isinstance(kv.get("tokenizer.chat_template"), str)},
    )
