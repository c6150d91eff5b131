"""Tiny model files built byte by byte, valid unless told otherwise, for the bad-input table and
the fuzz tests (a GGUF header per the GGUF spec in ggml/docs/gguf.md; a safetensors file per
the safetensors format: u64 header length, JSON header, data)."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np

_U32, _U64, _STR, _ARR = 4, 10, 8, 9  # GGUFValueType UINT32, UINT64, STRING, ARRAY
HIDDEN, FFN, VOCAB = 32, 64, 16


def _s(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<Q", len(raw)) + raw


def _kv(key: str, value: Any) -> bytes:
    if isinstance(value, str):
        return _s(key) + struct.pack("<I", _STR) + _s(value)
    if isinstance(value, list):
        return (_s(key) + struct.pack("<IIQ", _ARR, _STR, len(value))
                + b"".join(_s(v) for v in value))
    return _s(key) + struct.pack("<II", _U32, value)


def gguf_bytes(*, n_tensors: int | None = None, n_kv: int | None = None,
               offset: int | None = None, ttype: int = 0, version: int = 3,
               alignment: int | None = None, extra_kv: dict[str, Any] | None = None) -> bytes:
    """A one-layer llama GGUF header with F32 tensors (type 0) and their data; the keyword
    arguments overwrite a count, the last tensor's offset, every tensor's type or the version."""
    kvs = {"general.architecture": "llama", "general.name": "tiny",
           "llama.embedding_length": HIDDEN, "llama.feed_forward_length": FFN,
           "llama.block_count": 1, "llama.attention.head_count": 4,
           "tokenizer.ggml.tokens": [f"t{i}" for i in range(VOCAB)]}
    if alignment is not None:
        kvs["general.alignment"] = alignment
    kvs.update(extra_kv or {})  # str, list of str, or an int written as u32
    shapes = {"token_embd.weight": (HIDDEN, VOCAB), "blk.0.attn_q.weight": (HIDDEN, HIDDEN),
              "blk.0.ffn_down.weight": (FFN, HIDDEN), "output_norm.weight": (HIDDEN,)}
    infos, pos = [], 0
    for i, (name, ne) in enumerate(shapes.items()):
        off = offset if (offset is not None and i == len(shapes) - 1) else pos
        infos.append(_s(name) + struct.pack("<I", len(ne)) + struct.pack(f"<{len(ne)}Q", *ne)
                     + struct.pack("<IQ", ttype, off))
        pos += int(np.prod(ne)) * 4
        pos = (pos + 31) // 32 * 32
    head = (b"GGUF" + struct.pack("<IQQ", version,
                                  len(shapes) if n_tensors is None else n_tensors,
                                  len(kvs) if n_kv is None else n_kv)
            + b"".join(_kv(k, v) for k, v in kvs.items()) + b"".join(infos))
    head += b"\0" * (-len(head) % 32)
    return head + np.arange(pos // 4, dtype=np.float32).tobytes()


def safetensors_bytes(header: dict[str, Any] | None = None, *, raw_header: bytes | None = None,
                      header_len: int | None = None, data: bytes | None = None) -> bytes:
    """A safetensors file of a tiny llama's weights (F32), or with the header/length/data given."""
    if header is None:
        header, pos = {}, 0
        for name, shape in tiny_llama_shapes().items():
            n = int(np.prod(shape)) * 4
            header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [pos, pos + n]}
            pos += n
        data = bytes(pos) if data is None else data
    raw = raw_header if raw_header is not None else json.dumps(header).encode()
    length = len(raw) if header_len is None else header_len
    return struct.pack("<Q", length) + raw + (data or b"")


def tiny_llama_shapes() -> dict[str, tuple[int, ...]]:
    return {"model.embed_tokens.weight": (VOCAB, HIDDEN),
            "model.layers.0.self_attn.q_proj.weight": (HIDDEN, HIDDEN),
            "model.layers.0.mlp.down_proj.weight": (HIDDEN, FFN),
            "model.norm.weight": (HIDDEN,)}


def tiny_llama_config(**overrides: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {"architectures": ["LlamaForCausalLM"], "model_type": "llama",
                           "hidden_size": HIDDEN, "intermediate_size": FFN,
                           "num_hidden_layers": 1, "num_attention_heads": 4,
                           "vocab_size": VOCAB}
    cfg.update(overrides)
    return {k: v for k, v in cfg.items() if v is not None}


def hf_dir(path: Path, st: bytes | None = None, config: dict[str, Any] | None = None,
           config_text: str | None = None) -> Path:
    """A Hugging Face directory: config.json and model.safetensors."""
    path.mkdir(parents=True, exist_ok=True)
    text = config_text if config_text is not None else json.dumps(config or tiny_llama_config())
    (path / "config.json").write_text(text)
    (path / "model.safetensors").write_bytes(st if st is not None else safetensors_bytes())
    return path
