"""Tensor roles from canonical (llama.cpp) tensor names."""

from __future__ import annotations

import re

from advisor.modelspec import Role

_BLOCK = re.compile(r"^blk\.(\d+)\.(.+)$")

# llama.cpp tensor base names (gguf-py constants.TENSOR_NAMES) -> role.
_BLOCK_ROLES = {
    "attn_q": Role.ATTN_Q,
    "attn_k": Role.ATTN_K,
    "attn_v": Role.ATTN_V,
    "attn_output": Role.ATTN_O,
    "attn_qkv": Role.ATTN_QKV,
    "ffn_gate": Role.MLP_GATE,
    "ffn_up": Role.MLP_UP,
    "ffn_down": Role.MLP_DOWN,
    "ffn_gate_up": Role.MLP_GATE_UP,
}


def role_of(canonical: str, ndim: int) -> tuple[Role, int | None]:
    """Role and layer index of a tensor from its llama.cpp name.

    Anything with 'norm' in its name is a norm; biases and 1-D tensors that are not norms are
    OTHER (kept in their source precision, like llama.cpp does for 1-D tensors).
    """
    stem, _, suffix = canonical.rpartition(".")
    if suffix not in ("weight", "bias"):
        stem = canonical
    m = _BLOCK.match(stem)
    layer = int(m.group(1)) if m else None
    base = m.group(2) if m else stem
    if "norm" in base:
        return Role.NORM, layer
    if suffix == "bias" or ndim < 2:
        return Role.OTHER, layer
    if base == "token_embd":
        return Role.EMBEDDING, None
    if base == "output":
        return Role.LM_HEAD, None
    return _BLOCK_ROLES.get(base, Role.OTHER), layer
