"""Read a GGUF file's header into a ModelSpec (tensor data is memory-mapped, never read)."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

from advisor.errors import BadInput
from advisor.inspect.roles import role_of
from advisor.modelspec import ModelSpec, Role, SourceFormat, TensorInfo

GGUF_MAGIC = b"GGUF"
# Errors the gguf reader raises on a corrupt or truncated file (numpy's memmap raises
# ValueError/OSError, struct and indexing errors come from lying counts and offsets).
_READ_ERRORS = (ValueError, KeyError, IndexError, TypeError, OverflowError, OSError, struct.error)


def _field(reader: Any, key: str, default: Any = None) -> Any:
    f = reader.fields.get(key)
    if f is None:
        return default
    return f.contents()


def read_gguf(path: Path) -> ModelSpec:
    """Build a ModelSpec from a GGUF file's header and tensor infos."""
    from gguf import GGMLQuantizationType, GGUFReader

    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic != GGUF_MAGIC:
        raise BadInput(
            f"{path} is not a GGUF file (magic {magic!r}, expected b'GGUF')",
            "pass a .gguf model file or a Hugging Face directory",
        )
    try:
        reader = GGUFReader(str(path), "r")
        arch = _field(reader, "general.architecture")
        if not isinstance(arch, str):
            raise ValueError("general.architecture missing")
        tensors = []
        size = path.stat().st_size
        for t in reader.tensors:
            ne = [int(x) for x in t.shape]
            type_name = GGMLQuantizationType(int(t.tensor_type)).name
            nbytes = int(t.n_bytes)
            if int(t.data_offset) + nbytes > size:
                raise ValueError(f"tensor {t.name} runs past the end of the file")
            shape = tuple(reversed(ne))  # GGUF ne[0] is the row size: PyTorch order reverses it
            while len(shape) > 1 and shape[0] == 1:
                shape = shape[1:]
            role, layer = role_of(t.name, len(shape))
            tensors.append(
                TensorInfo(
                    name=t.name, canonical=t.name, role=role, layer=layer,
                    shape=shape, dtype=type_name, nbytes=nbytes,
                )
            )
        meta = {
            "hidden_size": _field(reader, f"{arch}.embedding_length"),
            "intermediate_size": _field(reader, f"{arch}.feed_forward_length"),
            "n_layers": _field(reader, f"{arch}.block_count"),
            "n_heads": _field(reader, f"{arch}.attention.head_count"),
        }
        missing = [k for k, v in meta.items() if v is None]
        if missing:
            raise ValueError(f"metadata lacks {', '.join(missing)}")
        n_heads = int(meta["n_heads"])
        n_kv = _field(reader, f"{arch}.attention.head_count_kv", n_heads)
        head_dim = _field(reader, f"{arch}.attention.key_length", int(meta["hidden_size"]) // n_heads)
        tokens = reader.fields.get("tokenizer.ggml.tokens")
        embd = next((t for t in tensors if t.role is Role.EMBEDDING), None)
        vocab = len(tokens.data) if tokens is not None else (embd.shape[0] if embd else 0)
        data_offset = int(reader.data_offset)
    except BadInput:
        raise
    except _READ_ERRORS as e:
        raise BadInput(
            f"{path} is not a readable GGUF model ({type(e).__name__}: {e})",
            "the file is truncated or corrupt; download or convert it again",
        ) from None
    has_output = any(t.role is Role.LM_HEAD for t in tensors)
    return ModelSpec(
        path=str(path),
        format=SourceFormat.GGUF,
        architecture=arch,
        name=str(_field(reader, "general.name", path.stem)),
        hidden_size=int(meta["hidden_size"]),
        intermediate_size=int(meta["intermediate_size"]),
        n_layers=int(meta["n_layers"]),
        n_heads=n_heads,
        n_kv_heads=int(n_kv),
        head_dim=int(head_dim),
        vocab_size=int(vocab),
        context_length=int(_field(reader, f"{arch}.context_length", 2048)),
        tied_embeddings=not has_output,
        tensors=tuple(tensors),
        metadata_bytes=data_offset,
        extra={"file_type": _field(reader, "general.file_type")},
    )
