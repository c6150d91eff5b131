"""Tiny model files built byte by byte, valid unless told otherwise, for the bad-input table and
the fuzz tests (a GGUF header per the GGUF spec in ggml/docs/gguf.md; a safetensors file per
the safetensors format: u64 header length, JSON header, data)."""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

_U32, _U64, _STR, _ARR = 4, 10, 8, 9  # GGUFValueType UINT32, UINT64, STRING, ARRAY
HIDDEN, FFN, VOCAB = 32, 64, 16


def _s(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<Q", len(raw)) + raw


@dataclass(frozen=True)
class RawValue:
    """A key/value's type id and payload written as given (a wrong type, a huge count)."""

    vtype: int
    payload: bytes


def gguf_kv(key: str | bytes, value: Any) -> bytes:
    """One GGUF key/value: a str, a list of str, an int (u32, or u64 past 2^32-1), a RawValue;
    a bytes key is written as is (not UTF-8, say)."""
    raw = key if isinstance(key, bytes) else key.encode()
    k = struct.pack("<Q", len(raw)) + raw
    if isinstance(value, RawValue):
        return k + struct.pack("<I", value.vtype) + value.payload
    if isinstance(value, str):
        return k + struct.pack("<I", _STR) + _s(value)
    if isinstance(value, list):
        return (k + struct.pack("<IIQ", _ARR, _STR, len(value))
                + b"".join(_s(v) for v in value))
    if value >= 1 << 32:
        return k + struct.pack("<IQ", _U64, value)
    return k + struct.pack("<II", _U32, value)


_kv = gguf_kv
TINY_SHAPES: dict[str, tuple[int, ...]] = {
    "token_embd.weight": (HIDDEN, VOCAB), "blk.0.attn_q.weight": (HIDDEN, HIDDEN),
    "blk.0.ffn_down.weight": (FFN, HIDDEN), "output_norm.weight": (HIDDEN,)}


def gguf_bytes(*, n_tensors: int | None = None, n_kv: int | None = None,
               offset: int | None = None, ttype: int = 0, version: int = 3,
               alignment: int | None = None, extra_kv: dict[str, Any] | None = None,
               shapes: Sequence[tuple[str, tuple[int, ...]]] | None = None,
               offsets: Sequence[int] | None = None, raw_kv: Sequence[bytes] = (),
               data_bytes: int | None = None) -> bytes:
    """A one-layer llama GGUF header with F32 tensors (type 0) and their data; the keyword
    arguments overwrite a count, the last tensor's offset, every tensor's type or the version.
    `extra_kv` adds or replaces key/values (None removes one); `shapes` replaces the tensors
    (name, ne) (duplicates allowed), `offsets` their offsets; `raw_kv` appends gguf_kv()
    entries; `data_bytes` sets the data section's length."""
    kvs: dict[str, Any] = {
        "general.architecture": "llama", "general.name": "tiny",
        "llama.embedding_length": HIDDEN, "llama.feed_forward_length": FFN,
        "llama.block_count": 1, "llama.attention.head_count": 4,
        "tokenizer.ggml.tokens": [f"t{i}" for i in range(VOCAB)]}
    if alignment is not None:
        kvs["general.alignment"] = alignment
    kvs.update(extra_kv or {})  # str, list of str, an int (u32/u64), a RawValue, None: removed
    kvs = {k: v for k, v in kvs.items() if v is not None}
    tensors = list(TINY_SHAPES.items()) if shapes is None else list(shapes)
    infos, pos = [], 0
    for i, (name, ne) in enumerate(tensors):
        off = offset if (offset is not None and i == len(tensors) - 1) else pos
        off = offsets[i] if offsets is not None else off
        infos.append(_s(name) + struct.pack("<I", len(ne)) + struct.pack(f"<{len(ne)}Q", *ne)
                     + struct.pack("<IQ", ttype, off))
        pos += int(np.prod(ne, dtype=object)) * 4
        pos = (pos + 31) // 32 * 32
    head = (b"GGUF" + struct.pack("<IQQ", version,
                                  len(tensors) if n_tensors is None else n_tensors,
                                  len(kvs) + len(raw_kv) if n_kv is None else n_kv)
            + b"".join(_kv(k, v) for k, v in kvs.items()) + b"".join(raw_kv)
            + b"".join(infos))
    head += b"\0" * (-len(head) % 32)
    n_data = pos if data_bytes is None else data_bytes
    return head + np.arange(n_data // 4, dtype=np.float32).tobytes()


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


_TOKENS = [chr(c) for c in range(ord("a"), ord("a") + VOCAB - 1)] + ["ab"]
# A byte-level BPE tokenizer.json of VOCAB tokens (one merge, a + b -> ab) as the tokenizers
# library writes it, and its tokenizer_config.json.
TOKENIZER: dict[str, Any] = {
    "version": "1.0", "truncation": None, "padding": None,
    "added_tokens": [{"id": 0, "content": "a", "single_word": False, "lstrip": False,
                      "rstrip": False, "normalized": False, "special": True}],
    "normalizer": None,
    "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                      "use_regex": True},
    "post_processor": None,
    "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                "use_regex": True},
    "model": {"type": "BPE", "dropout": None, "unk_token": None,
              "continuing_subword_prefix": None, "end_of_word_suffix": None, "fuse_unk": False,
              "byte_fallback": False, "ignore_merges": False,
              "vocab": {t: i for i, t in enumerate(_TOKENS)}, "merges": [["a", "b"]]},
}
TOKENIZER_CONFIG = {"bos_token": "a", "eos_token": "b", "model_max_length": 2048,
                    "tokenizer_class": "PreTrainedTokenizerFast",
                    "clean_up_tokenization_spaces": False}
