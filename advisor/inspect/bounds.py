"""Hyper-parameters of an untrusted model, bounded and cross-checked against its tensors before
anything is allocated or handed to llama.cpp or transformers.

Issue 22 found a config whose `vocab_size` disagreed with its tensors grow to 22.9 GB and be
OOM-killed, and a GGUF with a block count of 2^31 abort inside llama.cpp (exit 134). The
bounds are far above any published model (the largest: ~1M-token contexts, 256k vocabularies,
~200 layers, 16k hidden) and far below what would exhaust memory; the cross-checks are the
ones llama.cpp and transformers apply when they build the model, run here first so the user
gets one line naming the field instead of a crash.
"""

from __future__ import annotations

from advisor.errors import BadInput
from advisor.modelspec import ModelSpec, Role

LIMITS = {
    "n_layers": 4096,
    "hidden_size": 1 << 17,
    "intermediate_size": 1 << 20,
    "n_heads": 4096,
    "n_kv_heads": 4096,
    "head_dim": 4096,
    "vocab_size": 1 << 23,
    "context_length": 1 << 24,
}


def check_spec(spec: ModelSpec) -> ModelSpec:
    """`spec` when its hyper-parameters are in bounds and agree with its tensors; BadInput
    naming the first field that does not."""
    where = spec.path

    def refuse(problem: str) -> BadInput:
        return BadInput(f"{where}: {problem}", "the model's metadata (config.json or GGUF "
                        "header) contradicts its tensors or is out of range; re-download or "
                        "re-convert it")

    for field, limit in LIMITS.items():
        value = getattr(spec, field)
        if not isinstance(value, int) or not 1 <= value <= limit:
            raise refuse(f"{field} = {value!r} is outside 1..{limit:,}")
    if spec.n_heads % spec.n_kv_heads:
        raise refuse(f"{spec.n_heads} attention heads do not divide into {spec.n_kv_heads} "
                     "key/value heads")
    layers = {t.layer for t in spec.tensors if t.layer is not None}
    if layers and (max(layers) >= spec.n_layers or len(layers) != spec.n_layers):
        raise refuse(f"{spec.n_layers} layers declared, tensors for {len(layers)} "
                     f"(indices {min(layers)}..{max(layers)})")
    embd = next((t for t in spec.tensors if t.role is Role.EMBEDDING and len(t.shape) == 2),
                None)
    if embd is None:
        raise refuse("no token embedding matrix (token_embd / embed_tokens of two dimensions) "
                     "among its tensors")
    rows, cols = embd.shape
    if cols != spec.hidden_size:
        raise refuse(f"hidden size {spec.hidden_size}, but {embd.name} has {cols} columns")
    if rows != spec.vocab_size:
        raise refuse(f"vocabulary of {spec.vocab_size:,} tokens, but {embd.name} has "
                     f"{rows:,} rows")
    n_expert = int(spec.extra.get("n_expert", 0) or 0)
    if not 0 <= n_expert <= 1024:
        raise refuse(f"{n_expert} experts is outside 0..1,024")
    return spec
