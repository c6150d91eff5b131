"""A tiny Llama built from config with the embedded model's tokenizer (vocabulary 49,152), so the
HF backends can calibrate, load and tokenize without the real weights."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def tiny_with_tokenizer(tmp_path: Path, tokenizer_dir: Path, **overrides: Any) -> tuple[Path, Any]:
    from tests.conftest import tiny_hf_model

    cfg: dict[str, Any] = dict(vocab_size=49152, hidden_size=128, intermediate_size=256,
                               tie=True)
    cfg.update(overrides)
    model_dir, model = tiny_hf_model(tmp_path, **cfg)
    for f in TOKENIZER_FILES:
        shutil.copy2(tokenizer_dir / f, model_dir / f)
    return model_dir, model


_TOKENIZER: dict[str, Path] = {}


def embedded_tokenizer_dir() -> Path:
    """The embedded model's tokenizer saved as tokenizer.json (once per test process: the GGUF
    vocabulary conversion takes ~20 s), in the suite's cache (a test's tmp_path goes at the end of
    its test)."""
    if "dir" not in _TOKENIZER:
        import transformers

        from advisor.inspect import resolve_model

        gguf = resolve_model("smollm2-135m")
        tok = transformers.AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        from advisor.artifact.cache import cache_root

        out = cache_root() / "tests" / "smollm2-tokenizer"
        tok.save_pretrained(str(out))
        _TOKENIZER["dir"] = out
    return _TOKENIZER["dir"]
