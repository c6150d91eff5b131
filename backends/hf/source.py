"""The float Hugging Face source of the HF backends: the model directory itself, or, for a GGUF
source, its weights dequantized by transformers' GGUF loader and saved once as float16
safetensors (+ tokenizer) under the advisor cache.

float16 because the quality reference of a GGUF source is llama.cpp's F16 copy of the same
dequantized weights (backends.gguf.make_f16_reference): both round the same float32 values to
float16, so the HF float model and the reference hold the same weights and GGUF and HF candidates
are measured on one axis.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from advisor.modelspec import ModelSpec, SourceFormat

log = logging.getLogger(__name__)

FLOAT_DIR = "hf-float"


def float_source(spec: ModelSpec, cache_dir: str | Path | None = None) -> Path:
    """A directory `from_pretrained` reads: config.json, float safetensors, tokenizer files."""
    if spec.format is SourceFormat.HF:
        return Path(spec.path)
    from advisor.artifact.cache import cache_root, file_identity

    src = Path(spec.path)
    dst = cache_root(cache_dir) / FLOAT_DIR / f"{src.stem}-{file_identity(src)[:16]}"
    if (dst / "config.json").is_file():
        _name_architecture(dst)  # a copy cached before the architecture was written
        return dst
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}-", dir=dst.parent))
    try:
        _convert(src, tmp)
        if dst.exists():  # another process finished first
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dst


def _convert(src: Path, out: Path) -> None:
    import torch
    import transformers
    from safetensors.torch import save_file

    t0 = time.perf_counter()
    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(src.parent), gguf_file=src.name, dtype=torch.float16, trust_remote_code=False)
    tok = transformers.AutoTokenizer.from_pretrained(str(src.parent), gguf_file=src.name,
                                                     trust_remote_code=False)
    # transformers refuses save_pretrained on a GGUF-loaded model ("not serializable"): the
    # weights are plain float16 tensors by now, so they are written directly.
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()
             if not (tied and k == "lm_head.weight")}
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    cfg = model.config.to_dict()
    cfg.pop("quantization_config", None)
    # transformers' GGUF loader leaves `architectures` unset; vLLM picks its model class from it
    # (and refuses a config without one), and so do the checkpoints copied from this config
    cfg["architectures"] = [type(model).__name__]
    cfg["dtype"] = "float16"
    (out / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    model.generation_config.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    log.info("float16 HF copy of %s written in %.1f s", src.name, time.perf_counter() - t0)


def _name_architecture(dst: Path) -> None:
    """Add `architectures` to a cached copy's config.json written without it."""
    path = dst / "config.json"
    cfg = json.loads(path.read_text())
    if cfg.get("architectures"):
        return
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    cfg["architectures"] = [MODEL_FOR_CAUSAL_LM_MAPPING_NAMES[cfg["model_type"]]]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
