"""The tensors of a Hugging Face model from its config.json alone: plan before download.

Users size a model they have not fetched yet (`advisor inspect/estimate` on a directory with only
config.json). The tensor list is what transformers builds for the architecture (names, shapes);
tests/inspect/test_from_config.py checks it against transformers' own model built on the meta
device for every architecture of `HF_ARCHITECTURES`. The dtype is the config's `torch_dtype`
(`dtype` in newer configs), BF16 when absent. Every figure from such a spec is predicted: the
spec says so (`ModelSpec.extra["weights"] == CONFIG_ONLY`), and commands that need weights refuse
it (advisor.inspect.inspect_model).
"""

from __future__ import annotations

from typing import Any

CONFIG_ONLY = "config-only"
"""`ModelSpec.extra["weights"]` of a spec built from config.json alone."""

_DTYPES = {"bfloat16": "BF16", "float16": "F16", "float32": "F32", "half": "F16",
           "float": "F32"}
# transformers' config classes' default for tie_word_embeddings when the file leaves it out
_TIED_BY_DEFAULT = {"gemma", "gemma2"}
# ... and for head_dim (the others: hidden_size // num_attention_heads)
_HEAD_DIM_DEFAULT = {"gemma": 256, "gemma2": 256, "qwen3": 128}


def head_dim(cfg: dict[str, Any], arch: str) -> int:
    value = cfg.get("head_dim")
    if value:
        return int(value)
    return _HEAD_DIM_DEFAULT.get(arch) or int(cfg["hidden_size"]) // int(cfg["num_attention_heads"])


def config_dtype(cfg: dict[str, Any]) -> str:
    raw = cfg.get("torch_dtype", cfg.get("dtype"))
    return _DTYPES.get(str(raw).removeprefix("torch."), "BF16")


def tied(cfg: dict[str, Any], arch: str) -> bool:
    value = cfg.get("tie_word_embeddings")
    return arch in _TIED_BY_DEFAULT if value is None else bool(value)


def config_tensors(cfg: dict[str, Any], arch: str) -> list[tuple[str, tuple[int, ...]]]:
    """(HF name, shape) of every parameter of the llama-family architecture `arch` (a llama.cpp
    name of advisor.inspect.hf_source.HF_ARCHITECTURES) described by `cfg` (already validated:
    positive integer sizes)."""
    hidden, inter = int(cfg["hidden_size"]), int(cfg["intermediate_size"])
    n_heads = int(cfg["num_attention_heads"])
    n_kv = int(cfg.get("num_key_value_heads") or n_heads)
    hd = head_dim(cfg, arch)
    vocab = int(cfg["vocab_size"])
    q, kv = n_heads * hd, n_kv * hd
    out: list[tuple[str, tuple[int, ...]]] = [("model.embed_tokens.weight", (vocab, hidden))]
    for i in range(int(cfg["num_hidden_layers"])):
        p = f"model.layers.{i}."
        out += [(p + "self_attn.q_proj.weight", (q, hidden)),
                (p + "self_attn.k_proj.weight", (kv, hidden)),
                (p + "self_attn.v_proj.weight", (kv, hidden)),
                (p + "self_attn.o_proj.weight", (hidden, q))]
        if arch == "qwen2" or cfg.get("attention_bias"):  # qwen2: q/k/v always, o never
            out += [(p + "self_attn.q_proj.bias", (q,)), (p + "self_attn.k_proj.bias", (kv,)),
                    (p + "self_attn.v_proj.bias", (kv,))]
            if arch != "qwen2":
                out.append((p + "self_attn.o_proj.bias", (hidden,)))
        if arch == "qwen3":
            out += [(p + "self_attn.q_norm.weight", (hd,)),
                    (p + "self_attn.k_norm.weight", (hd,))]
        out += [(p + "mlp.gate_proj.weight", (inter, hidden)),
                (p + "mlp.up_proj.weight", (inter, hidden)),
                (p + "mlp.down_proj.weight", (hidden, inter))]
        if cfg.get("mlp_bias") and arch == "llama":
            out += [(p + "mlp.gate_proj.bias", (inter,)), (p + "mlp.up_proj.bias", (inter,)),
                    (p + "mlp.down_proj.bias", (hidden,))]
        out += [
                (p + "input_layernorm.weight", (hidden,)),
                (p + "post_attention_layernorm.weight", (hidden,))]
        if arch == "gemma2":
            out += [(p + "pre_feedforward_layernorm.weight", (hidden,)),
                    (p + "post_feedforward_layernorm.weight", (hidden,))]
    out.append(("model.norm.weight", (hidden,)))
    if not tied(cfg, arch):
        out.append(("lm_head.weight", (vocab, hidden)))
    return out
