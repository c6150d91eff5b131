"""The bad-input table, continued (issue 22, untrusted models and shared directories): crafted
GGUF headers, lying or hostile Hugging Face directories (config.json, tokenizer files, weight
indexes, links and special files), and flags and paths that name nothing usable. Every case:
exit 2, one line naming the problem and the fix, no traceback, nothing written.

A case is (argv, needle) or (argv, needle, env); "{name}" in argv is a file of _FILES, built
only for the cases that name it."""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.cli.test_cli import BAD_INPUT, advisor, assert_one_line_exit_2
from tests.fuzz.builders import (
    HIDDEN,
    TINY_SHAPES,
    TOKENIZER,
    VOCAB,
    RawValue,
    gguf_bytes,
    gguf_kv,
    hf_dir,
    safetensors_bytes,
    tiny_llama_config,
)

_ARR, _U32, _U64 = 9, 4, 10
_SHAPES = list(TINY_SHAPES.items())


def _gguf(**kw: object) -> Callable[[Path], bytes]:
    return lambda _: gguf_bytes(**kw)  # type: ignore[arg-type]


def _patched(old: bytes, new: bytes) -> Callable[[Path], bytes]:
    """The valid tiny GGUF with one byte string replaced by another of the same length."""
    assert len(old) == len(new)
    return lambda _: gguf_bytes().replace(old, new, 1)


def _name(n: str) -> bytes:
    return struct.pack("<Q", len(n)) + n.encode()


GGUF_CASES: dict[str, Callable[[Path], bytes]] = {
    "dup_tensor": _gguf(shapes=_SHAPES + [("blk.0.attn_q.weight", (HIDDEN, HIDDEN))]),
    "dup_key": _gguf(raw_kv=[gguf_kv("general.name", "again")]),
    "misaligned": _gguf(offsets=[0, 2048 + 4, 2048 + 4 + 4096, 2048 + 4 + 4096 + 8192]),
    "overlap": _gguf(offsets=[0, 0, 0, 0]),
    "gap": _gguf(offsets=[0, 4096, 8192, 16384], data_bytes=16384 + 128),
    "frob_arch": _gguf(extra_kv={"general.architecture": "frobnicator"}),
    "no_arch": _gguf(extra_kv={"general.architecture": None}),
    "int_arch": _gguf(extra_kv={"general.architecture": 7}),
    "no_tensors": _gguf(shapes=[]),
    "layers_2e31": _gguf(extra_kv={"llama.block_count": 1 << 31}),
    "layers_more": _gguf(extra_kv={"llama.block_count": 2}),
    "layer_index": _gguf(shapes=_SHAPES[:1] + [("blk.7.attn_q.weight", (HIDDEN, HIDDEN))]
                         + _SHAPES[2:]),
    "heads_0": _gguf(extra_kv={"llama.attention.head_count": 0}),
    "kv_heads_3": _gguf(extra_kv={"llama.attention.head_count_kv": 3}),
    "kv_heads_str": _gguf(extra_kv={"llama.attention.head_count_kv": "four"}),
    "key_length_0": _gguf(extra_kv={"llama.attention.key_length": 0}),
    "ffn_0": _gguf(extra_kv={"llama.feed_forward_length": 0}),
    "hidden_64": _gguf(extra_kv={"llama.embedding_length": 2 * HIDDEN}),
    "vocab_20": _gguf(extra_kv={"tokenizer.ggml.tokens": [f"t{i}" for i in range(VOCAB + 4)]}),
    "ctx_0": _gguf(extra_kv={"llama.context_length": 0}),
    "ctx_2e40": _gguf(extra_kv={"llama.context_length": 1 << 40}),
    "layers_str": _gguf(extra_kv={"llama.block_count": "many"}),
    "experts": _gguf(extra_kv={"llama.expert_count": 1 << 20, "llama.expert_used_count": 2}),
    "experts_used": _gguf(extra_kv={"llama.expert_count": 8, "llama.expert_used_count": 9}),
    "experts_no_used": _gguf(extra_kv={"llama.expert_count": 8}),
    "align_u64": _gguf(extra_kv={"general.alignment": RawValue(_U64, struct.pack("<Q", 32))}),
    "array_huge": _gguf(extra_kv={"general.tags": RawValue(_ARR, struct.pack("<IQ", _U32,
                                                                             1 << 40))}),
    "array_nested": _gguf(extra_kv={"general.tags": RawValue(_ARR, struct.pack("<IQ", _ARR, 1))}),
    "vtype_99": _gguf(extra_kv={"general.note": RawValue(99, b"")}),
    "key_utf8": _gguf(raw_kv=[gguf_kv(b"general.\xffnote", "x")]),
    "key_2e40": _gguf(raw_kv=[struct.pack("<Q", 1 << 40) + b"general.x"]),
    "ndims_0": _patched(_name("output_norm.weight") + struct.pack("<I", 1),
                        _name("output_norm.weight") + struct.pack("<I", 0)),
    "ndims_9": _patched(_name("output_norm.weight") + struct.pack("<I", 1),
                        _name("output_norm.weight") + struct.pack("<I", 9)),
    "ne_0": _gguf(shapes=_SHAPES[:3] + [("output_norm.weight", (0,))]),
    "ne_2e40": _gguf(shapes=_SHAPES[:1] + [("blk.0.attn_q.weight", (HIDDEN, 1 << 40))]
                     + _SHAPES[2:], data_bytes=16384),
    "name_1mib": _gguf(shapes=_SHAPES + [("x" * (1 << 20), (HIDDEN,))]),
    "removed_type": _gguf(ttype=4),  # GGML_TYPE_Q4_2, removed from ggml
    "q4k_rows": _gguf(ttype=12),  # Q4_K blocks of 256 values; rows here are 16..64 long
    "v1": _gguf(version=1),
    "align_str": _gguf(extra_kv={"general.alignment": "32"}),
    "align_0": _gguf(alignment=0),
    "short": lambda _: b"GGUF" + struct.pack("<I", 3) + bytes(12),
}


def _st_dir(header: dict[str, object], n: int) -> Callable[[Path], Path]:
    return lambda p: hf_dir(p, safetensors_bytes(header, data=bytes(n)))


def _cfg(**overrides: object) -> Callable[[Path], Path]:
    return lambda p: hf_dir(p, config=tiny_llama_config(**overrides))


def _with(name: str, text: str | bytes) -> Callable[[Path], Path]:
    """The valid tiny HF directory plus file `name` holding `text`."""
    def build(p: Path) -> Path:
        hf_dir(p)
        (p / name).write_bytes(text.encode() if isinstance(text, str) else text)
        return p
    return build


def _index(weight_map: dict[str, str] | str) -> Callable[[Path], Path]:
    def build(p: Path) -> Path:
        hf_dir(p)
        (p / "model.safetensors").rename(p / "model-00001-of-00001.safetensors")
        (p.parent / "outside.safetensors").write_bytes(safetensors_bytes())
        text = weight_map if isinstance(weight_map, str) else json.dumps(
            {"metadata": {}, "weight_map": weight_map})
        (p / "model.safetensors.index.json").write_text(text)
        return p
    return build


def _weights_link(target: str) -> Callable[[Path], Path]:
    def build(p: Path) -> Path:
        hf_dir(p)
        (p / "model.safetensors").unlink()
        (p / "model.safetensors").symlink_to(target)
        return p
    return build


def _fifo_weights(p: Path) -> Path:
    hf_dir(p)
    (p / "model.safetensors").unlink()
    os.mkfifo(p / "model.safetensors")
    return p


def _huge_config(p: Path) -> Path:
    hf_dir(p)
    with open(p / "config.json", "r+b") as f:
        f.truncate(65 << 20)  # sparse: no disk used
    return p


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


_F32 = {"dtype": "F32"}
_EMB = "model.embed_tokens.weight"
HF_CASES: dict[str, Callable[[Path], Path]] = {
    "cfg_nested": lambda p: hf_dir(p, config_text=_nested(100_000)),
    "cfg_nested_100": lambda p: hf_dir(p, config_text=json.dumps(tiny_llama_config())[:-1]
                                       + ', "x": ' + '{"a": ' * 100 + "1" + "}" * 101),
    "cfg_list": lambda p: hf_dir(p, config_text="[1, 2]"),
    "cfg_utf8": lambda p: _with("config.json", b'{"hidden_size": "\xff"}')(p),
    "cfg_huge": _huge_config,
    "cfg_vocab": _cfg(vocab_size=32_000),
    "cfg_layers": _cfg(num_hidden_layers=3),
    "cfg_hidden_neg": _cfg(hidden_size=-1),
    "cfg_heads_0": _cfg(num_attention_heads=0),
    "cfg_ffn_2e40": _cfg(intermediate_size=1 << 40),
    "cfg_hidden_2e30": _cfg(hidden_size=1 << 30),
    "cfg_ctx_0": _cfg(max_position_embeddings=0),
    "cfg_ctx_2e30": _cfg(max_position_embeddings=1 << 30),
    "cfg_kv_heads": _cfg(num_key_value_heads=3),
    "cfg_vocab_bool": _cfg(vocab_size=True),
    "cfg_head_dim_0": _cfg(head_dim=0),
    "cfg_experts": _cfg(num_local_experts=1 << 20),
    "cfg_auto_map": _cfg(auto_map={"AutoModel": "modeling_x.X"}),
    "tok_auto_map": _with("tokenizer_config.json", '{"auto_map": {"AutoTokenizer": ["t.T"]}}'),
    "tok_not_json": _with("tokenizer.json", '{"model": {"type": "BPE", '),
    "tok_list": _with("tokenizer.json", "[]"),
    "tok_no_model": _with("tokenizer.json", '{"version": "1.0", "model": 5}'),
    "tok_nested": _with("tokenizer.json", _nested(100_000)),
    "tok_panic": _with("tokenizer.json", json.dumps(  # a merge whose result is not a token
        {**TOKENIZER, "model": {**TOKENIZER["model"], "vocab": {"a": 0, "b": 1}}})),
    "tok_no_vocab": _with("tokenizer.json", json.dumps({**TOKENIZER, "model": {"type": "BPE"}})),
    "tokcfg_not_json": _with("tokenizer_config.json", "{'add_bos_token': True}"),
    "tokcfg_list": _with("tokenizer_config.json", '["not", "an", "object"]'),
    "special_not_json": _with("special_tokens_map.json", '{"bos_token": '),
    "shard_missing": _index({_EMB: "model-00002-of-00002.safetensors"}),
    "index_outside": _index({_EMB: "../outside.safetensors"}),
    "index_absolute": _index({_EMB: "/etc/hostname"}),
    "index_not_json": _index("{weight_map"),
    "weights_fifo": _fifo_weights,
    "weights_devzero": _weights_link("/dev/zero"),
    "weights_dangling": _weights_link("/no/such/weights.safetensors"),
    "st_overlap": _st_dir({_EMB: {**_F32, "shape": [16, 32], "data_offsets": [0, 2048]},
                           "model.norm.weight": {**_F32, "shape": [32],
                                                 "data_offsets": [1024, 1152]}}, 2048),
    "st_size": _st_dir({_EMB: {**_F32, "shape": [16, 32], "data_offsets": [0, 1024]}}, 1024),
    "st_negative": _st_dir({_EMB: {**_F32, "shape": [-16, 32], "data_offsets": [0, 2048]}},
                           2048),
    "st_zero_dim": _st_dir({_EMB: {**_F32, "shape": [0, 32], "data_offsets": [0, 0]},
                            "model.norm.weight": {**_F32, "shape": [32],
                                                  "data_offsets": [0, 128]}}, 128),
    "st_scalar": _st_dir({_EMB: {**_F32, "shape": [], "data_offsets": [0, 4]}}, 4),
    "empty_dir": lambda p: (p.mkdir(), p)[1],
}

GGUF_NEEDLES = {
    "dup_tensor": "duplicate tensor name 'blk.0.attn_q.weight'",
    "dup_key": "duplicate key 'general.name'",
    "misaligned": "offset 2052 is not aligned to general.alignment 32",
    "overlap": "overlaps the tensor before it",
    "gap": "leaves a gap",
    "frob_arch": "architecture 'frobnicator' is not one llama.cpp runs",
    "no_arch": "general.architecture missing",
    "int_arch": "general.architecture missing",
    "no_tensors": "holds no tensors",
    "layers_2e31": "n_layers = 2147483648 is outside",
    "layers_more": "2 layers declared, tensors for 1",
    "layer_index": "tensors for 2 (indices 0..7)",
    "heads_0": "lacks valid n_heads",
    "kv_heads_3": "do not divide into 3 key/value heads",
    "kv_heads_str": "head_count_kv is 'four', not an integer",
    "key_length_0": "head_dim = 0 is outside",
    "ffn_0": "lacks valid intermediate_size",
    "hidden_64": "hidden size 64, but token_embd.weight has 32 columns",
    "vocab_20": "vocabulary of 20 tokens, but token_embd.weight has 16 rows",
    "ctx_0": "context_length = 0 is outside",
    "ctx_2e40": "context_length = 1099511627776 is outside",
    "layers_str": "lacks valid n_layers",
    "experts": "expert_count 1048576 with expert_used_count 2",
    "experts_used": "expert_count 8 with expert_used_count 9",
    "experts_no_used": "expert_count 8 with expert_used_count 0",
    "align_u64": "general.alignment has value type 10, not UINT32",
    "array_huge": "array 'general.tags' count 1099511627776 does not fit",
    "array_nested": "nested arrays are not supported",
    "vtype_99": "'general.note' has unknown value type 99",
    "key_utf8": "is not UTF-8",
    "key_2e40": "key length count 1099511627776 does not fit",
    "ndims_0": "has 0 dimensions",
    "ndims_9": "has 9 dimensions",
    "ne_0": "has shape (0,)",
    "ne_2e40": "'blk.0.attn_q.weight' runs past the end of the file",
    "name_1mib": "tensor name of 1,048,576 bytes is longer than 63",
    "removed_type": "unknown GGMLQuantizationType 4",
    "q4k_rows": "does not split into Q4_K blocks",
    "v1": "GGUF version 1 is not supported",
    "align_str": "general.alignment has value type 8, not UINT32",
    "align_0": "general.alignment 0 is not a power of two",
    "short": "too short for a GGUF header",
}
HF_NEEDLES = {
    "cfg_nested": "config.json is not valid JSON (maximum recursion depth",
    "cfg_nested_100": "config.json nests more than 64 levels deep",
    "cfg_list": "config.json is not a JSON object",
    "cfg_utf8": "config.json is not valid JSON ('utf-8' codec",
    "cfg_huge": "config.json is larger than 64 MiB",
    "cfg_vocab": "vocabulary of 32,000 tokens, but model.embed_tokens.weight has 16 rows",
    "cfg_layers": "3 layers declared, tensors for 1",
    "cfg_hidden_neg": "no valid 'hidden_size'",
    "cfg_heads_0": "no valid 'num_attention_heads'",
    "cfg_ffn_2e40": "no valid 'intermediate_size'",
    "cfg_hidden_2e30": "hidden_size = 1073741824 is outside",
    "cfg_ctx_0": "'max_position_embeddings' is 0, not a positive integer",
    "cfg_ctx_2e30": "context_length = 1073741824 is outside",
    "cfg_kv_heads": "do not divide into 3 key/value heads",
    "cfg_vocab_bool": "no valid 'vocab_size'",
    "cfg_head_dim_0": "'head_dim' is 0, not a positive integer",
    "cfg_experts": "1048576 experts is outside",
    "cfg_auto_map": "custom code (auto_map in config.json) is refused",
    "tok_auto_map": "custom code (auto_map in tokenizer_config.json) is refused",
    "tok_not_json": "tokenizer.json is not valid JSON",
    "tok_list": "tokenizer.json is not a JSON object",
    "tok_no_model": "tokenizer.json has no tokenizer 'model' object",
    "tok_nested": "tokenizer.json is not valid JSON (maximum recursion depth",
    "tok_panic": "is not a tokenizer the tokenizers library can load",
    "tok_no_vocab": "can load (Missing vocab/merges",
    "tokcfg_not_json": "tokenizer_config.json is not valid JSON",
    "tokcfg_list": "tokenizer_config.json is not a JSON object",
    "special_not_json": "special_tokens_map.json is not valid JSON",
    "shard_missing": "lacks model-00002-of-00002.safetensors named by its weight index",
    "index_outside": "names '../outside.safetensors', a file outside the model directory",
    "index_absolute": "names '/etc/hostname', a file outside the model directory",
    "index_not_json": "model.safetensors.index.json is not a valid weight index",
    "weights_fifo": "model.safetensors is not a regular file",
    "weights_devzero": "model.safetensors is not a regular file",
    "weights_dangling": "model.safetensors is a dangling symbolic link",
    "st_overlap": "invalid offset for tensor `model.norm.weight`",
    "st_size": "invalid shape, data type, or offset",
    "st_negative": "expected usize",
    "st_zero_dim": "has shape [0, 32], with no elements",
    "st_scalar": "no token embedding matrix",
    "empty_dir": "has no *.safetensors files",
}
_CACHE_FIX = "point QUANT_ADVISOR_CACHE at a writable directory"
_NO_USER = "~nosuchuser names no user of this host"

MORE_BAD_INPUT: list[Any] = [
    *[(["inspect", "--model", "{g_" + k + "}"], n) for k, n in GGUF_NEEDLES.items()],
    *[(["inspect", "--model", "{h_" + k + "}"], n) for k, n in HF_NEEDLES.items()],
    (["inspect", "--model", "/dev/zero"], "is not a regular file or a directory"),
    (["inspect", "--model", "~nosuchuser/model.gguf"], _NO_USER),
    (["quantize", "--preset", "Q4_0", "--calib-text", "~nosuchuser/c.txt", "--out", "{out}"],
     _NO_USER),
    (["quantize", "--preset", "Q4_0", "--context", "-1", "--out", "{out}"], "--context -1"),
    (["recommend", "--context", "-1", "--out", "{out}"], "context=-1"),
    (["quantize", "--preset", "Q4_0", "--concurrency", "0", "--out", "{out}"],
     "--concurrency 0"),
    (["recommend", "--concurrency", "0", "--out", "{out}"], "concurrency=0"),
    (["eval", "--artifact", "{fake_artifact}", "--window", "0"], "--window 0"),
    (["eval", "--artifact", "{fake_artifact}", "--window", "1000000"],
     "pass a window of 4..8192 tokens"),
    (["eval", "--artifact", "{fake_artifact}", "--max-windows", "-1"], "--max-windows -1"),
    (["quantize", "--preset", "Q4_0", "--out", "{dangling}"], "is a dangling symbolic link"),
    (["quantize", "--model", "{h_ok}", "--preset", "Q4_0", "--out", "{h_ok}"],
     "is or contains the source model"),
    (["quantize", "--preset", "Q4_0", "--calib-text", "{empty_text}", "--out", "{out}"],
     "empty.txt is empty"),
    (["quantize", "--preset", "Q4_0", "--calib-text", "{binary_text}", "--out", "{out}"],
     "is not UTF-8"),
    (["eval", "--artifact", "{fake_artifact}", "--eval-text", "{blank_text}"],
     "blank.txt is empty"),
    (["eval", "--artifact", "{fake_artifact}", "--eval-text", "{text_dir}"], "is a directory"),
    (["eval", "--artifact", "{fake_artifact}"], "is a file, not a directory; " + _CACHE_FIX,
     {"QUANT_ADVISOR_CACHE": "{junk}"}),
    (["-q", "eval", "--artifact", "{fake_artifact}"],
     "lies under a file, not a directory; " + _CACHE_FIX, {"QUANT_ADVISOR_CACHE": "{junk_sub}"}),
    (["quantize", "--preset", "Q4_0", "--imatrix", "{junk}", "--out", "{out}"],
     "do not fit its 180 bytes"),
    (["recommend", "--storage", "notaurl", "--out", "{out}"],
     "neither a database URL nor a SQLite file path"),
    (["worker", "--study", "s", "--storage", "notaurl"],
     "neither a database URL nor a SQLite file path"),
    (["quantize", "--preset", "Q4_0", "--target", "nope", "--out", "{out}"],
     "unknown hardware profile 'nope'"),
    (["recommend", "--target", "nope", "--out", "{out}"], "unknown hardware profile 'nope'"),
    (["report", "/no/such/dir"], "/no/such/dir is not a directory"),
    (["bench", "--artifact", "{fake_artifact}", "--requests", "0"], "n_requests=0"),
    (["quantize", "--plan", "{plan_nested}", "--out", "{out}"], "nested too deeply"),
    (["quantize", "--plan", "{plan_list}", "--out", "{out}"], "a JSON list, not an object"),
    (["eval", "--artifact", "{nested_report}"], "not a complete advisor artifact"),
]


def _write(path: Path, data: bytes | str) -> Path:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def _fake_artifact(p: Path, report: str = '{"version": 1, "backend": "gguf", "label": "f"}'
                   ) -> Path:
    p.mkdir()
    (p / "report.json").write_text(report)
    return p


_FILES: dict[str, Callable[[Path], Path]] = {
    **{"{g_" + k + "}": (lambda k, f: lambda t: _write(t / f"{k}.gguf", f(t)))(k, f)
       for k, f in GGUF_CASES.items()},
    **{"{h_" + k + "}": (lambda k, f: lambda t: f(t / k))(k, f) for k, f in HF_CASES.items()},
    "{h_ok}": lambda t: hf_dir(t / "model"),
    "{out}": lambda t: t / "out",
    "{junk}": lambda t: _write(t / "junk.bin", b"not a model at all" * 10),
    "{junk_sub}": lambda t: _write(t / "junk2.bin", b"a file") / "cache",
    "{dangling}": lambda t: (os.symlink(t / "nowhere", t / "dangling"), t / "dangling")[1],
    "{empty_text}": lambda t: _write(t / "empty.txt", ""),
    "{blank_text}": lambda t: _write(t / "blank.txt", " \n\t\n"),
    "{binary_text}": lambda t: _write(t / "binary.txt", b"\xff\xfe\x00text"),
    "{text_dir}": lambda t: (t / "texts").mkdir() or t / "texts",
    "{fake_artifact}": lambda t: _fake_artifact(t / "fake_artifact"),
    "{nested_report}": lambda t: _fake_artifact(t / "nested", _nested(100_000)),
    "{plan_nested}": lambda t: _write(t / "plan.json", _nested(100_000)),
    "{plan_list}": lambda t: _write(t / "plan.json", '["gguf", {"x": "Q4_K"}]'),
}


def _files(tmp_path: Path, names: list[str] | None = None) -> dict[str, Path]:
    """The files the cases name (`names`: only those), built under `tmp_path`."""
    return {k: build(tmp_path) for k, build in _FILES.items() if names is None or k in names}


def _snapshot(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every entry under `root` (links not followed): mode, size, modification time."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        out[str(p.relative_to(root))] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


def _case(case: Any) -> Any:
    """A table row as a pytest parameter (argv, needle, env)."""
    if hasattr(case, "marks"):  # already a pytest.param (a pending row)
        return case
    env = case[2] if len(case) > 2 else {}
    return pytest.param(case[0], case[1], env,
                        id=" ".join([*case[0], *(f"{k}={v}" for k, v in env.items())]))


@pytest.mark.parametrize("args,needle,env", [_case(c) for c in MORE_BAD_INPUT])
def test_more_bad_input_one_line_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        args: list[str], needle: str,
                                        env: dict[str, str]) -> None:
    files = _files(tmp_path, [a for a in [*args, *env.values()] if a.startswith("{")])
    for key, value in env.items():
        monkeypatch.setenv(key, str(files.get(value, value)))
    before = _snapshot(tmp_path)
    assert_one_line_exit_2(advisor(*[str(files.get(a, a)) for a in args]), needle)
    assert _snapshot(tmp_path) == before  # nothing written, nothing deleted


def test_the_two_tables_hold_at_least_100_distinct_cases() -> None:
    assert set(GGUF_NEEDLES) == set(GGUF_CASES) and set(HF_NEEDLES) == set(HF_CASES)
    # a row is its argv and its environment
    counted = [(*c[0], *sorted(c[2].items() if len(c) > 2 else ())) for c in MORE_BAD_INPUT]
    old = [tuple(a) for a, _ in BAD_INPUT]
    assert len(set(counted)) == len(counted) >= 50
    assert len(set(old + counted)) == len(old) + len(counted) >= 100


def test_links_to_regular_files_outside_the_directory_are_followed(tmp_path: Path) -> None:
    """The Hugging Face cache's layout (snapshots/<rev>/config.json -> ../../blobs/<sha>):
    links leaving the model directory are followed when they reach a regular file."""
    blobs, snap = tmp_path / "blobs", tmp_path / "snapshots" / "rev"
    hf_dir(blobs)
    snap.mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        (snap / name).symlink_to(Path("../..") / "blobs" / name)
    r = advisor("inspect", "--model", str(snap), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["vocab_size"] == VOCAB
