"""Property-based fuzzing of the model readers (hypothesis): whatever bytes a GGUF or
safetensors file holds, reading its header either gives a ModelSpec or raises BadInput, the
project's own error; never another exception, a hang or a huge allocation.

Inputs start from valid tiny files (tests/fuzz/builders.py) and are mutated where parsers break:
counts, lengths, offsets, type ids, truncation; plus structured safetensors headers with random
dtypes, shapes and offsets. Runs in `make test` (CI); the seed is derandomized so a failure
reproduces, and hypothesis prints the failing input.
"""

from __future__ import annotations

import json
import struct
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from advisor.errors import BadInput
from advisor.inspect.gguf_source import read_gguf
from advisor.inspect.hf_source import read_hf_dir
from advisor.modelspec import ModelSpec
from tests.fuzz.builders import gguf_bytes, hf_dir, safetensors_bytes, tiny_llama_config

FUZZ = settings(max_examples=300, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
VALID_GGUF = gguf_bytes()
VALID_ST = safetensors_bytes()
_HEADER_END = VALID_GGUF.index(b"output_norm.weight") + 64  # tensor infos end about here

_U64_EDGES = st.sampled_from([0, 1, 2**31 - 1, 2**32, 2**63 - 1, 2**64 - 1, 1 << 40])


@st.composite
def mutated(draw: st.DrawFn, base: bytes, hot: int) -> bytes:
    """`base` with a few byte overwrites (mostly in its first `hot` bytes), u64 fields set to
    edge values, a truncation, or an insertion."""
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["byte", "u64", "u32", "truncate", "insert"]))
        limit = hot if draw(st.booleans()) or hot >= len(data) else len(data)
        pos = draw(st.integers(0, max(limit - 1, 0)))
        if kind == "byte" and data:
            data[pos % len(data)] = draw(st.integers(0, 255))
        elif kind == "u64" and len(data) >= 8:
            pos = min(pos, len(data) - 8)
            data[pos:pos + 8] = struct.pack("<Q", draw(_U64_EDGES))
        elif kind == "u32" and len(data) >= 4:
            pos = min(pos, len(data) - 4)
            data[pos:pos + 4] = struct.pack("<I", draw(st.integers(0, 2**32 - 1)))
        elif kind == "truncate":
            del data[pos:]
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
    return bytes(data)


def _read_gguf_bytes(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "m.gguf"
        path.write_bytes(data)
        try:
            spec = read_gguf(path)
        except BadInput as e:
            assert "\n" not in e.one_line()
            return
        assert isinstance(spec, ModelSpec)


def _read_st(st_data: bytes, config: str | None = None) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = hf_dir(Path(d) / "m", st_data, config_text=config)
        try:
            spec = read_hf_dir(path)
        except BadInput as e:
            assert "\n" not in e.one_line()
            return
        assert isinstance(spec, ModelSpec)


@FUZZ
@given(mutated(VALID_GGUF, _HEADER_END))
def test_gguf_reader_mutated(data: bytes) -> None:
    _read_gguf_bytes(data)


@FUZZ
@given(st.binary(max_size=512))
def test_gguf_reader_random_after_magic(tail: bytes) -> None:
    _read_gguf_bytes(b"GGUF" + tail)


@FUZZ
@given(mutated(VALID_ST, 8 + len(VALID_ST) - len(safetensors_bytes(header={}))))
def test_safetensors_reader_mutated(data: bytes) -> None:
    _read_st(data)


_DTYPES = st.sampled_from(["F32", "F16", "BF16", "I8", "U8", "F64", "BOOL", "Q4", "", "F8_E4M3"])
_DIM = st.one_of(st.integers(-2, 70), _U64_EDGES)


@FUZZ
@given(st.dictionaries(
    st.sampled_from(["model.embed_tokens.weight", "model.norm.weight", "lm_head.weight",
                     "__metadata__", "model.layers.0.mlp.down_proj.weight", "x"]),
    st.one_of(
        st.fixed_dictionaries({"dtype": _DTYPES, "shape": st.lists(_DIM, max_size=4),
                               "data_offsets": st.lists(_DIM, min_size=2, max_size=2)}),
        st.dictionaries(st.text(max_size=4), st.text(max_size=4), max_size=2)),
    max_size=4),
    st.integers(0, 256))
def test_safetensors_reader_structured_headers(header: dict[str, object], n_data: int) -> None:
    _read_st(safetensors_bytes(header, data=bytes(n_data)))


@FUZZ
@given(st.dictionaries(st.sampled_from(list(tiny_llama_config()) + ["head_dim", "torch_dtype"]),
                       st.one_of(st.none(), st.integers(-3, 2**40), st.text(max_size=8),
                                 st.lists(st.text(max_size=20), max_size=2), st.floats())))
def test_config_json_fuzzed(overrides: dict[str, object]) -> None:
    cfg = {**tiny_llama_config(), **overrides}
    _read_st(VALID_ST, json.dumps(cfg))


_GGUF_KEYS = st.sampled_from([
    "general.architecture", "llama.embedding_length", "llama.feed_forward_length",
    "llama.block_count", "llama.attention.head_count", "llama.attention.head_count_kv",
    "llama.attention.key_length", "llama.context_length", "llama.expert_count", "general.name",
    "tokenizer.ggml.tokens", "general.alignment", "general.file_type"])


@FUZZ
@given(st.dictionaries(_GGUF_KEYS, st.one_of(st.integers(0, 2**32 - 1), st.text(max_size=8),
                                             st.lists(st.text(max_size=4), max_size=3)),
                       max_size=4))
def test_gguf_metadata_of_wrong_types(kv: dict[str, object]) -> None:
    _read_gguf_bytes(gguf_bytes(extra_kv=kv))
