"""Tiny random models built from config (no file), wrapped as the loader would return them."""

from __future__ import annotations

from typing import Any

import torch

from advisor.sensitivity.loader import LoadedModel, canonical_params


def tiny_loaded(tie: bool = False, n_layers: int = 3, arch: str = "llama",
                **overrides: Any) -> LoadedModel:
    """A llama by default; `arch="gemma2"` adds what the llama lacks: a scaled embedding,
    sliding-window layers (masks that differ by layer) and final logit soft-capping."""
    import transformers

    common: dict[str, Any] = dict(
        vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=n_layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        tie_word_embeddings=tie)
    if arch == "gemma2":
        common.update(head_dim=8, query_pre_attn_scalar=8, sliding_window=4, layer_types=None,
                      final_logit_softcapping=0.5)
    common.update(overrides)
    cfg_cls, model_cls = {"llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM),
                          "gemma2": (transformers.Gemma2Config, transformers.Gemma2ForCausalLM),
                          }[arch]
    torch.manual_seed(0)
    model = model_cls(cfg_cls(**common)).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return LoadedModel(model, arch, canonical_params(model, arch, n_layers), 0.0)
