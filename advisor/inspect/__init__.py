"""Model inspection: `inspect_model(model)` reads headers only and returns a ModelSpec."""

from __future__ import annotations

from pathlib import Path

from advisor.errors import BadInput
from advisor.inspect.bounds import check_spec
from advisor.inspect.from_config import CONFIG_ONLY
from advisor.inspect.gguf_source import read_gguf
from advisor.inspect.hf_source import read_hf_dir
from advisor.inspect.resolve import ALIASES, DEFAULT_MODEL, resolve_model
from advisor.modelspec import ModelSpec

__all__ = ["ALIASES", "DEFAULT_MODEL", "inspect_model", "is_config_only", "resolve_model"]


def is_config_only(spec: ModelSpec) -> bool:
    """Whether `spec` was built from config.json alone (no weights: every figure predicted)."""
    return spec.extra.get("weights") == CONFIG_ONLY


def inspect_model(model: str | Path, *, weights: bool = True) -> ModelSpec:
    """ModelSpec of an alias, a GGUF file, or a Hugging Face directory. `weights=False` also
    takes a directory with only config.json (sizes predicted from it: `is_config_only`)."""
    path = resolve_model(str(model))
    if path.is_dir():
        return check_spec(read_hf_dir(path, weights=weights))
    if path.stat().st_size == 0:
        raise BadInput(f"{path} is empty", "pass a .gguf model file or a Hugging Face directory")
    if path.name == "config.json":
        return check_spec(read_hf_dir(path.parent, weights=weights))
    return check_spec(read_gguf(path))
