"""Synthetic llama-style models for the preset tests: a ModelSpec, and the same model as a GGUF."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from advisor.modelspec import ModelSpec, Role, SourceFormat, TensorInfo

_ROLES = {
    "attn_q": Role.ATTN_Q, "attn_k": Role.ATTN_K, "attn_v": Role.ATTN_V,
    "attn_output": Role.ATTN_O, "ffn_gate": Role.MLP_GATE, "ffn_up": Role.MLP_UP,
    "ffn_down": Role.MLP_DOWN,
}


def _tensor(name: str, shape: tuple[int, ...], role: Role, layer: int | None) -> TensorInfo:
    dtype = "F32" if len(shape) == 1 or role in (Role.NORM, Role.OTHER) else "F16"
    n = int(np.prod(shape)) * (4 if dtype == "F32" else 2)
    return TensorInfo(name, name, role, layer, shape, dtype, n)


def synthetic_spec(
    n_layers: int = 16,
    hidden: int = 256,
    ffn: int = 512,
    n_heads: int = 4,
    n_kv_heads: int = 1,
    vocab: int = 512,
    tied: bool = False,
    n_expert: int = 0,
    arch: str = "llama",
    path: str = "synthetic.gguf",
) -> ModelSpec:
    head_dim = hidden // n_heads
    kv = n_kv_heads * head_dim
    tensors = [_tensor("token_embd.weight", (vocab, hidden), Role.EMBEDDING, None),
               _tensor("output_norm.weight", (hidden,), Role.NORM, None)]
    if not tied:
        tensors.append(_tensor("output.weight", (vocab, hidden), Role.LM_HEAD, None))
    for i in range(n_layers):
        b = f"blk.{i}."
        tensors += [
            _tensor(b + "attn_norm.weight", (hidden,), Role.NORM, i),
            _tensor(b + "ffn_norm.weight", (hidden,), Role.NORM, i),
            _tensor(b + "attn_q.weight", (hidden, hidden), Role.ATTN_Q, i),
            _tensor(b + "attn_k.weight", (kv, hidden), Role.ATTN_K, i),
            _tensor(b + "attn_v.weight", (kv, hidden), Role.ATTN_V, i),
            _tensor(b + "attn_output.weight", (hidden, hidden), Role.ATTN_O, i),
        ]
        if n_expert:
            tensors += [
                _tensor(b + "ffn_gate_inp.weight", (n_expert, hidden), Role.OTHER, i),
                _tensor(b + "ffn_gate_exps.weight", (n_expert, ffn, hidden), Role.MLP_GATE, i),
                _tensor(b + "ffn_up_exps.weight", (n_expert, ffn, hidden), Role.MLP_UP, i),
                _tensor(b + "ffn_down_exps.weight", (n_expert, hidden, ffn), Role.MLP_DOWN, i),
            ]
        else:
            tensors += [
                _tensor(b + "ffn_gate.weight", (ffn, hidden), Role.MLP_GATE, i),
                _tensor(b + "ffn_up.weight", (ffn, hidden), Role.MLP_UP, i),
                _tensor(b + "ffn_down.weight", (hidden, ffn), Role.MLP_DOWN, i),
            ]
    return ModelSpec(
        path=path, format=SourceFormat.GGUF, architecture=arch, name="synthetic",
        hidden_size=hidden, intermediate_size=ffn, n_layers=n_layers, n_heads=n_heads,
        n_kv_heads=n_kv_heads, head_dim=head_dim, vocab_size=vocab, context_length=256,
        tied_embeddings=tied, tensors=tuple(tensors),
        extra={"n_expert": n_expert} if n_expert else {},
    )


def write_gguf(spec: ModelSpec, path: Path, seed: int = 0) -> Path:
    """Write `spec` as a GGUF llama.cpp can quantize (random weights; no tokenizer needed)."""
    import gguf

    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(str(path), spec.architecture)
    a = spec.architecture
    w.add_uint32(f"{a}.context_length", spec.context_length)
    w.add_uint32(f"{a}.embedding_length", spec.hidden_size)
    w.add_uint32(f"{a}.block_count", spec.n_layers)
    w.add_uint32(f"{a}.feed_forward_length", spec.intermediate_size)
    w.add_uint32(f"{a}.attention.head_count", spec.n_heads)
    w.add_uint32(f"{a}.attention.head_count_kv", spec.n_kv_heads)
    w.add_float32(f"{a}.attention.layer_norm_rms_epsilon", 1e-5)
    w.add_uint32(f"{a}.vocab_size", spec.vocab_size)
    n_expert = int(spec.extra.get("n_expert", 0))
    if n_expert:
        w.add_uint32(f"{a}.expert_count", n_expert)
        w.add_uint32(f"{a}.expert_used_count", 2)
    for t in spec.tensors:
        dtype = np.float32 if t.dtype == "F32" else np.float16
        w.add_tensor(t.canonical, (rng.standard_normal(t.shape) * 0.02).astype(dtype))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
