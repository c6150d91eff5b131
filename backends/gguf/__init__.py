"""The GGUF backend (llama.cpp), as the advisor sees it: a private package, this face only
re-exports (the layout of optuna's `storages/_rdb/`).

    backend.py   the registered `GgufBackend` (quantize, load, serve), `gguf_file`
    quantize.py  the plan as llama.cpp quantization jobs (one type override per tensor)
    imatrix.py   importance matrices computed by llama.cpp's eval callback
    runtime.py   llama.cpp sessions: logits, generation, log routing
    reference.py the F16 reference GGUF every candidate is measured against
    convert.py   an HF safetensors directory to an F16 GGUF (and `vocab.py`, its tokenizer)
    serve.py     serve.sh and the Ollama Modelfile
"""

from __future__ import annotations

from backends.gguf.backend import IMATRIX_CHUNKS, MODEL_FILE, GgufBackend, gguf_file
from backends.gguf.convert import cached_f16
from backends.gguf.imatrix import Imatrix, imatrix_for, values_digest
from backends.gguf.reference import f16_reference, make_f16_reference
from backends.gguf.runtime import GgufRunner, LlamaSession, default_threads

__all__ = ["IMATRIX_CHUNKS", "MODEL_FILE", "GgufBackend", "GgufRunner", "Imatrix", "LlamaSession",
           "cached_f16", "default_threads", "f16_reference", "gguf_file", "imatrix_for",
           "make_f16_reference", "values_digest"]
