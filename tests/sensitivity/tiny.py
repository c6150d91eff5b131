"""A tiny random llama built from config (no file), wrapped as the loader would return it."""

from __future__ import annotations

import torch

from advisor.sensitivity.loader import LoadedModel, canonical_params


def tiny_loaded(tie: bool = False, n_layers: int = 3) -> LoadedModel:
    import transformers

    cfg = transformers.LlamaConfig(
        vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=n_layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        tie_word_embeddings=tie)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(cfg).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return LoadedModel(model, "llama", canonical_params(model, "llama", n_layers), 0.0)
