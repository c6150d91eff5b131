"""Fuzzing of a Hugging Face directory's JSON files (hypothesis): config.json, tokenizer.json,
tokenizer_config.json and special_tokens_map.json, byte-mutated and truncated from valid files
or replaced by random JSON. Reading the directory (read_hf_dir, which validates every config and
tokenizer file first: advisor/inspect/untrusted.py) gives a ModelSpec or raises BadInput, one
line; so does the tokenizer half of the GGUF conversion (backends/gguf/vocab.add_vocab) on a
fuzzed tokenizer.json: never another exception. Seeds are derandomized (a failure reproduces)
and the examples bounded: the module runs in about 15 s.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from advisor.errors import BadInput
from advisor.inspect.hf_source import read_hf_dir
from advisor.modelspec import ModelSpec
from tests.fuzz.builders import (
    TOKENIZER,
    TOKENIZER_CONFIG,
    VOCAB,
    hf_dir,
    safetensors_bytes,
    tiny_llama_config,
)
from tests.fuzz.test_readers_fuzz import mutated

READS = settings(max_examples=120, deadline=None, derandomize=True,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
CONVERTS = settings(READS, max_examples=25)

VALID_ST = safetensors_bytes()
SPECIAL = {"bos_token": "a", "eos_token": "b"}
VALID = {"config.json": json.dumps(tiny_llama_config()).encode(),
         "tokenizer.json": json.dumps(TOKENIZER).encode(),
         "tokenizer_config.json": json.dumps(TOKENIZER_CONFIG).encode(),
         "special_tokens_map.json": json.dumps(SPECIAL).encode()}

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2, 2**40) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=4),
    max_leaves=12)


def _directory(d: Path, files: dict[str, bytes]) -> Path:
    """The valid tiny directory with its JSON files replaced by `files`."""
    path = hf_dir(d / "m", VALID_ST)
    for name, data in {**VALID, **files}.items():
        (path / name).write_bytes(data)
    return path


def _read(files: dict[str, bytes]) -> None:
    with tempfile.TemporaryDirectory() as d:
        try:
            spec = read_hf_dir(_directory(Path(d), files))
        except BadInput as e:
            assert "\n" not in e.one_line() and len(e.one_line()) <= 380
            return
        assert isinstance(spec, ModelSpec)


def test_the_valid_directory_reads() -> None:
    with tempfile.TemporaryDirectory() as d:
        assert read_hf_dir(_directory(Path(d), {})).vocab_size == VOCAB


@READS
@given(st.sampled_from(sorted(VALID)), st.data())
def test_json_files_mutated(name: str, data: st.DataObject) -> None:
    """Byte overwrites, truncations and insertions in one of the four files."""
    _read({name: data.draw(mutated(VALID[name], len(VALID[name])))})


@READS
@given(st.sampled_from(sorted(VALID)), _JSON)
def test_json_files_replaced_by_random_json(name: str, value: Any) -> None:
    _read({name: json.dumps(value).encode()})


@READS
@given(st.sampled_from(["model", "decoder", "pre_tokenizer", "added_tokens", "normalizer"]),
       _JSON)
def test_tokenizer_json_fields_of_any_type(field: str, value: Any) -> None:
    _read({"tokenizer.json": json.dumps({**TOKENIZER, field: value}).encode()})


class _Writer:
    """A GGUFWriter that accepts every call (what add_vocab writes is not under test here)."""

    def __getattr__(self, name: str) -> Any:
        return lambda *a, **k: None


@CONVERTS
@given(st.sampled_from(["model", "decoder", "pre_tokenizer", "added_tokens"]), _JSON)
def test_gguf_vocab_of_a_fuzzed_tokenizer(field: str, value: Any) -> None:
    from backends.gguf.vocab import add_vocab

    tj = {**TOKENIZER, field: value}
    with tempfile.TemporaryDirectory() as d:
        path = _directory(Path(d), {"tokenizer.json": json.dumps(tj).encode()})
        try:
            kind = add_vocab(_Writer(), path, VOCAB, "llama")
        except BadInput as e:
            assert "\n" not in e.one_line()
            return
        assert kind in ("gpt2", "llama")


def test_the_valid_tokenizer_converts() -> None:
    from backends.gguf.vocab import add_vocab

    with tempfile.TemporaryDirectory() as d:
        assert add_vocab(_Writer(), _directory(Path(d), {}), VOCAB, "llama") == "gpt2"
