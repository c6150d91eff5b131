"""The GGUF backend (llama.cpp), as the advisor sees it: a private package, this face only
re-exports (the layout of optuna's `storages/_rdb/`).

    backend.py   the registered `GgufBackend` (quantize, load, serve), `gguf_file`
    quantize.py  the plan as llama.cpp quantization jobs (one type override per tensor)
    imatrix.py   importance matrices computed by llama.cpp's eval callback (importance.py: by
                 the layer sweep, for large float models)
    layers.py    a GGUF's weights in torch float32, read on demand: one decoder layer at a time
                 (imported when first named here: it imports torch)
    runtime.py   llama.cpp sessions: logits, generation, log routing
    reference.py the F16 reference GGUF every candidate is measured against
    convert.py   an HF safetensors directory to an F16 GGUF (and `vocab.py`, its tokenizer)
    serve.py     serve.sh and the Ollama Modelfile
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from backends.gguf.backend import IMATRIX_CHUNKS, MODEL_FILE, GgufBackend, gguf_file
from backends.gguf.convert import cached_f16
from backends.gguf.imatrix import Imatrix, imatrix_for, values_digest
from backends.gguf.reference import f16_reference, make_f16_reference
from backends.gguf.runtime import GgufRunner, LlamaSession, default_threads

if TYPE_CHECKING:
    from backends.gguf.layers import (
        FAST_ARCHS,
        HEAD_CHUNK,
        UNHANDLED_KEYS,
        GGUFWeights,
        Sweep,
        decode,
        first_output,
        gguf_arch,
        gguf_config,
        header_of,
        repeat_batch,
        run_decoder,
        streamable,
        streams,
    )

_LAYERS = ("FAST_ARCHS", "HEAD_CHUNK", "UNHANDLED_KEYS", "GGUFWeights", "Sweep", "decode",
           "first_output", "gguf_arch", "gguf_config", "header_of", "repeat_batch", "run_decoder",
           "streamable", "streams")


def __getattr__(name: str) -> Any:
    """layers.py's names, imported on first use (torch and transformers are heavy)."""
    if name in _LAYERS:
        return getattr(importlib.import_module("backends.gguf.layers"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["FAST_ARCHS", "HEAD_CHUNK", "IMATRIX_CHUNKS", "MODEL_FILE", "UNHANDLED_KEYS",
           "GGUFWeights", "GgufBackend", "GgufRunner", "Imatrix", "LlamaSession", "Sweep",
           "cached_f16", "decode", "default_threads", "f16_reference", "first_output",
           "gguf_arch", "gguf_config", "gguf_file", "header_of", "imatrix_for",
           "make_f16_reference", "repeat_batch", "run_decoder", "streamable", "streams",
           "values_digest"]
