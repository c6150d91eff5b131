"""Model inspection: `inspect_model(model)` reads headers only and returns a ModelSpec."""

from __future__ import annotations

from pathlib import Path

from advisor.errors import BadInput
from advisor.inspect.bounds import check_spec
from advisor.inspect.gguf_source import read_gguf
from advisor.inspect.hf_source import read_hf_dir
from advisor.inspect.resolve import ALIASES, DEFAULT_MODEL, resolve_model
from advisor.modelspec import ModelSpec

__all__ = ["ALIASES", "DEFAULT_MODEL", "inspect_model", "resolve_model"]


def inspect_model(model: str | Path) -> ModelSpec:
    """ModelSpec of an alias, a GGUF file, or a Hugging Face directory."""
    path = resolve_model(str(model))
    if path.is_dir():
        return check_spec(read_hf_dir(path))
    if path.stat().st_size == 0:
        raise BadInput(f"{path} is empty", "pass a .gguf model file or a Hugging Face directory")
    if path.name == "config.json":
        return check_spec(read_hf_dir(path.parent))
    return check_spec(read_gguf(path))
