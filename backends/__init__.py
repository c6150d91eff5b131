"""Every backend, one line each: its name, its module (imported on first use) and the formats it
writes. Adding a backend is one module with one `@register(name)` class and one line here; the
scheme tables, `recommend --backend` choices, `quantize --bits` and the conformance suite
(tests/backends/test_conformance.py) are all derived from these lines (backends.registry)."""

from __future__ import annotations

from backends.registry import (
    GGUF_ALL,
    declare,
    entries,
    entry,
    get_backend,
    hf_backends,
    names,
    register,
)

declare("gguf", "backends.gguf", (GGUF_ALL,))
declare("rtn", "backends.rtn", ("W4A16", "W8A16"), int_mix=True)
# auto's int4 writer: at 4 bits, group size 128 (per tensor 64 where 128 does not divide),
# judged on held-out text (BENCHMARKS.md, make bench SECTION=hf, 2026-12-07), llm-compressor's
# GPTQ measured 0.20x RTN's mean KL on the rotated float-native SmolLM2 (AWQ 0.48x) and 0.54x on
# the embedded model (AWQ 0.54x), in 63-65 s against AWQ's 104-111 s.
declare("gptq", "backends.gptq", ("W4A16", "W8A16"), auto=("W4A16",), int_mix=True)
declare("awq", "backends.awq", ("W4A16", "W8A16"), int_mix=True)
declare("autoround", "backends.autoround", ("W4A16", "W8A16"), int_mix=True)
declare("fp8", "backends.fp8", ("W8A8-FP8",))
declare("smoothquant", "backends.smoothquant", ("W8A8-INT8",))
declare("nf4", "backends.nf4", ("NF4",))

__all__ = ["declare", "entries", "entry", "get_backend", "hf_backends", "names", "register"]
