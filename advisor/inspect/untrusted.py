"""Refuse what would run code from a model directory, before anything reads it with transformers.

Two ways a Hugging Face directory carries code: `auto_map` in one of the JSON files transformers'
Auto classes read (it names Python modules in the directory, which they import when trusted),
and pickle checkpoints (`pytorch_model.bin`, `*.pt`, ...), which run code when unpickled. Every
`from_pretrained` of the project also passes `trust_remote_code=False`; these checks turn what
transformers would refuse with a traceback (or, for pickles, open) into one `BadInput` line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from advisor.errors import BadInput

# The files whose `auto_map` the Auto classes follow (config, tokenizer, processors).
CODE_MAP_FILES = ("config.json", "tokenizer_config.json", "processor_config.json",
                  "preprocessor_config.json", "video_preprocessor_config.json")
PICKLE_GLOBS = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")
_MAX_JSON_BYTES = 64 << 20  # a config file larger than this is not one
_MAX_DEPTH = 32


def _has_auto_map(node: Any, depth: int = 0) -> bool:
    """`auto_map` anywhere in the JSON object (sub-configs such as text_config included)."""
    if depth > _MAX_DEPTH:
        return True  # nested past any real config: refuse rather than walk on
    if isinstance(node, dict):
        return "auto_map" in node or any(_has_auto_map(v, depth + 1) for v in node.values())
    if isinstance(node, list):
        return any(_has_auto_map(v, depth + 1) for v in node)
    return False


def refuse_custom_code(d: Path) -> None:
    """BadInput when a JSON file of directory `d` asks transformers to run code of its own."""
    for name in CODE_MAP_FILES:
        path = Path(d) / name
        if not path.is_file():
            continue
        if path.stat().st_size > _MAX_JSON_BYTES:
            raise BadInput(f"{path} is larger than {_MAX_JSON_BYTES >> 20} MiB, not a config",
                           f"restore the model's {name}")
        try:
            data = json.loads(path.read_bytes())
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
            why = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
            raise BadInput(f"{path} is not valid JSON ({why})",
                           f"restore the model's {name}") from None
        if _has_auto_map(data):
            raise BadInput(
                f"{d}: custom code (auto_map in {name}) is refused: the advisor never runs code "
                "from a model directory",
                "use a checkpoint whose architecture transformers ships")


def checkpoint_pickles(d: Path) -> list[str]:
    """Names of the pickle checkpoints in directory `d` (any case of the suffix)."""
    suffixes = {g[1:] for g in PICKLE_GLOBS}
    if not Path(d).is_dir():
        return []
    return sorted(p.name for p in Path(d).iterdir()
                  if p.is_file() and p.suffix.lower() in suffixes)


def refuse_pickle_only(d: Path) -> None:
    """BadInput when directory `d` holds pickle checkpoints and no safetensors weights: nothing
    may fall back to unpickling them."""
    pickles = checkpoint_pickles(d)
    if pickles and not any(Path(d).glob("*.safetensors")):
        raise BadInput(
            f"{d} holds only pickle checkpoints ({', '.join(pickles[:3])}), which run code "
            "when loaded and are refused",
            "convert them to safetensors (e.g. `model.save_pretrained(dir, "
            "safe_serialization=True)` in a sandbox) and pass that directory",
        )


def check_hf_dir(d: Path) -> None:
    """Both checks: the entry of every path that hands directory `d` to transformers."""
    refuse_custom_code(d)
    refuse_pickle_only(d)
