"""transformers' GGUF loader, as the sensitivity stage uses it, on architectures other than llama:
the float32 model it builds from a converted F32 file must compute what the HF checkpoint does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from advisor.inspect import inspect_model
from advisor.sensitivity.loader import load_gguf_model
from backends.gguf.convert import convert_hf_to_gguf
from tests.backends.test_gguf_convert import DATA, TEXT, build_tiny

# qwen3 with a head size other than transformers' default 128 (its GGUF key table drops
# attention.key_length); gemma2 with soft-caps and a query scale other than the class defaults
CASES: dict[str, dict[str, Any]] = {
    "qwen2": {},
    "qwen3": {"head_dim": 32},
    "gemma2": {"head_dim": 32, "query_pre_attn_scalar": 32, "attn_logit_softcapping": 2.0,
               "final_logit_softcapping": 3.0},
}


@pytest.mark.parametrize("arch", list(CASES))
def test_loaded_model_computes_what_the_checkpoint_does(tmp_path: Path, arch: str) -> None:
    model, tok = build_tiny(arch, tmp_path / "hf", DATA.read_text(encoding="utf-8")[:8000],
                            **CASES[arch])
    path = convert_hf_to_gguf(inspect_model(tmp_path / "hf"), tmp_path / "gguf", out_type="F32")
    loaded = load_gguf_model(path)
    ids = torch.tensor([tok(TEXT).input_ids[:24]])
    with torch.no_grad():
        want = model(ids).logits
        got = loaded.model(ids).logits
    assert got.shape == want.shape
    assert float((got - want).abs().max() / want.abs().max()) < 1e-4, arch
    if arch == "gemma2":  # the cap binds: without it these logits would exceed 3
        assert float(want.abs().max()) < 3.0
