"""Refuse what would run code from a model directory, before anything reads it with transformers;
and read the directory's JSON files as the untrusted input they are.

Two ways a Hugging Face directory carries code: `auto_map` in one of the JSON files transformers'
Auto classes read (it names Python modules in the directory, which they import when trusted),
and pickle checkpoints (`pytorch_model.bin`, `*.pt`, ...), which run code when unpickled. Every
`from_pretrained` of the project also passes `trust_remote_code=False`; these checks turn what
transformers would refuse with a traceback (or, for pickles, open) into one `BadInput` line.

The JSON files transformers and the GGUF conversion read (configs and tokenizer files) are parsed
here first, bounded in size and nesting, and must be JSON objects (tokenizer.json one that the
tokenizers library loads: its Rust parser panics on some inputs), so that a broken or hostile one
ends in one line here, not in a traceback (or a RecursionError, or a Rust panic) later.

A model directory may be shared: an entry that is not a regular file (a FIFO would block every
reader, a device never ends) is refused. Symbolic links to regular files are followed wherever
they point: the Hugging Face cache lays every snapshot out as links into its `blobs/` folder
(snapshots/<rev>/config.json -> ../../blobs/<sha>), so refusing links that leave the directory
would refuse every cached model. A weight index, being text, must name files inside the
directory (hf_source.weight_files).
"""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from advisor.errors import BadInput

# The files whose `auto_map` the Auto classes follow (config, tokenizer, processors).
CODE_MAP_FILES = ("config.json", "tokenizer_config.json", "processor_config.json",
                  "preprocessor_config.json", "video_preprocessor_config.json")
# Other JSON files of a model directory that transformers or the GGUF conversion read.
TOKENIZER_FILES = ("tokenizer.json", "special_tokens_map.json", "added_tokens.json",
                   "generation_config.json")
PICKLE_GLOBS = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")
_MAX_JSON_BYTES = 64 << 20  # a config file larger than this is not one
_MAX_TOKENIZER_BYTES = 512 << 20  # tokenizer.json of a 256k vocabulary: ~35 MB
_MAX_DEPTH = 64  # real configs and tokenizers nest < 10 levels; serde_json stops at 128


def regular_file(path: Path, what: str = "") -> bool:
    """True when `path` is (or links to) a regular file, False when nothing is there; BadInput
    for a dangling link or an entry no reader should open (FIFO, socket, device)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if os.path.islink(path):
            raise BadInput(f"{path} is a dangling symbolic link",
                           f"restore the model's {what or path.name} or remove the link") from None
        return False
    except OSError as e:  # a link loop, a permission error
        raise BadInput(f"{path} cannot be read ({e.strerror or e})",
                       f"restore the model's {what or path.name} or fix its permissions") from None
    if stat.S_ISREG(mode):
        return True
    if stat.S_ISDIR(mode):
        return False
    raise BadInput(f"{path} is not a regular file (a FIFO, socket or device)",
                   f"replace it with the model's {what or path.name}")


def _depth_ok(node: Any) -> bool:
    """Whether `node` nests at most _MAX_DEPTH containers deep (iterative: no recursion)."""
    stack = [(node, 0)]
    while stack:
        v, depth = stack.pop()
        if depth > _MAX_DEPTH:
            return False
        if isinstance(v, dict):
            stack.extend((x, depth + 1) for x in v.values() if isinstance(x, (dict, list)))
        elif isinstance(v, list):
            stack.extend((x, depth + 1) for x in v if isinstance(x, (dict, list)))
    return True


def read_json_object(path: Path, name: str | None = None) -> dict[str, Any]:
    """The JSON object in file `path` (a config or tokenizer file of a model directory):
    BadInput naming the file and the fix when it is too large, not UTF-8, not JSON, nested too
    deep, or not an object."""
    name = name or path.name
    limit = _MAX_TOKENIZER_BYTES if name == "tokenizer.json" else _MAX_JSON_BYTES
    regular_file(path, name)
    fix = f"restore the model's {name}"
    if path.stat().st_size > limit:
        raise BadInput(f"{path} is larger than {limit >> 20} MiB, not a {name}", fix)
    try:
        raw = path.read_bytes()
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        why = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise BadInput(f"{path} is not valid JSON ({why})", fix) from None
    if not isinstance(data, dict):
        raise BadInput(f"{path} is not a JSON object (a {type(data).__name__})", fix)
    if not _depth_ok(data):
        raise BadInput(f"{path} nests more than {_MAX_DEPTH} levels deep", fix)
    if name == "tokenizer.json":
        if not isinstance(data.get("model"), dict):
            raise BadInput(f"{path} has no tokenizer 'model' object", fix)
        _loadable_tokenizer(path, raw.decode("utf-8"), fix)
    return data


def _loadable_tokenizer(path: Path, text: str, fix: str) -> None:
    """BadInput unless the tokenizers library (what transformers' fast tokenizers are) builds a
    tokenizer from `text` (~0.1 s for a 49k vocabulary). Its parser is the one every later
    AutoTokenizer call runs, and on some inputs (a merge whose result is not in the vocabulary)
    it panics: a PanicException, which is not an Exception, ends the process with a Rust
    backtrace on stderr. That message is kept off the terminal while the check runs."""
    try:
        from tokenizers import Tokenizer
    except ImportError:  # nothing here loads a fast tokenizer then
        return
    try:
        with _stderr_silenced():
            Tokenizer.from_str(text)
    except BaseException as e:
        if not isinstance(e, Exception) and type(e).__name__ != "PanicException":
            raise  # KeyboardInterrupt, SystemExit
        why = " ".join(str(e).split())[:120] or type(e).__name__
        raise BadInput(f"{path} is not a tokenizer the tokenizers library can load ({why})",
                       fix) from None


@contextmanager
def _stderr_silenced() -> Iterator[None]:
    """File descriptor 2 sent to /dev/null while the block runs (a Rust panic writes there)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _has_auto_map(node: Any) -> bool:
    """`auto_map` anywhere in the JSON object (sub-configs such as text_config included)."""
    stack = [node]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            if "auto_map" in v:
                return True
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return False


def refuse_custom_code(d: Path) -> None:
    """BadInput when a JSON file of directory `d` asks transformers to run code of its own, or
    when one of its config and tokenizer files is not a readable JSON object (read_json_object).
    """
    for name in CODE_MAP_FILES + TOKENIZER_FILES:
        path = Path(d) / name
        if not regular_file(path, name):
            continue
        data = read_json_object(path, name)  # tokenizer.json of 150k tokens: ~0.1 s
        if name in CODE_MAP_FILES and _has_auto_map(data):
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
