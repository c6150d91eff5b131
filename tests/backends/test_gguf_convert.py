"""HF -> GGUF conversion: tiny random models of each family, checked against llama.cpp itself.

Each model gets its own small BPE tokenizer trained on the calibration text, with the
pre-tokenizer of a real family (GPT-2, Llama 3, Qwen2, SmolLM, Llama 2 byte-fallback), so each
vocabulary path and the pre-tokenizer detection are exercised too. Weights are drawn at a scale
where attention is far from uniform: a wrong q/k permutation or norm shift changes the logits
well past the tolerance.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from advisor.errors import BadInput
from advisor.inspect import inspect_model
from backends.gguf.convert import convert_hf_to_gguf, output_path

llama_cpp = pytest.importorskip("llama_cpp")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

DATA = Path(__file__).resolve().parents[2] / "data" / "calibration.txt"
TEXT = "The quick brown fox jumps over the lazy dog. Sunlight looks white, but it is a mixture"
N_TOKENS = 32

# Split regexes as released tokenizer.json files hold them (Llama 3, Qwen2).
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_SPLIT = LLAMA3_SPLIT.replace(r"\p{N}{1,3}", r"\p{N}")

# arch -> (config class, model class, pre-tokenizer style, extra vocab rows, config overrides)
CASES: dict[str, tuple[str, str, str, int, dict[str, Any]]] = {
    "llama": ("LlamaConfig", "LlamaForCausalLM", "llama-bpe", 0, {}),
    "llama-spm": ("LlamaConfig", "LlamaForCausalLM", "spm", 0, {}),  # Llama 2 style vocab
    "mistral": ("MistralConfig", "MistralForCausalLM", "gpt-2", 0, {"head_dim": 16}),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", "qwen2", 8, {"tie_word_embeddings": True}),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", "qwen2", 0, {"head_dim": 16}),
    "gemma": ("GemmaConfig", "GemmaForCausalLM", "smollm", 0, {"head_dim": 16}),
    "gemma2": ("Gemma2Config", "Gemma2ForCausalLM", "gpt-2", 0,
               {"head_dim": 16, "query_pre_attn_scalar": 16, "layer_types": None}),
}


def _tokenizer(style: str, corpus: str) -> Any:
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    specials = ["<s>", "</s>"]
    tok = Tokenizer(models.BPE())
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    if style == "spm":  # what transformers makes of a SentencePiece BPE: byte fallback, Metaspace
        specials += ["<unk>"] + [f"<0x{i:02X}>" for i in range(256)]
        tok = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>", fuse_unk=True))
        tok.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="first", split=False)
        alphabet = []
    elif style == "gpt-2":
        tok.pre_tokenizer = byte_level
    elif style == "smollm":
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True), byte_level])
    else:
        split = pre_tokenizers.Split(Regex(LLAMA3_SPLIT if style == "llama-bpe" else QWEN2_SPLIT),
                                     behavior="isolated")
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [split, pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel() if style != "spm" else decoders.Sequence(
        [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(),
         decoders.Strip(" ", 1, 0)])
    trainer = trainers.BpeTrainer(vocab_size=384 + (256 if style == "spm" else 0),
                                  special_tokens=specials, initial_alphabet=alphabet,
                                  show_progress=False)
    tok.train_from_iterator([corpus], trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B:1", special_tokens=[("<s>", 0)])
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>",
                                                eos_token="</s>")


def build_tiny(arch: str, d: Path, corpus: str, **more: Any) -> tuple[Any, Any]:
    cfg_name, model_name, style, extra_rows, overrides = CASES[arch]
    tok = _tokenizer(style, corpus)
    kw: dict[str, Any] = dict(
        vocab_size=len(tok) + extra_rows, hidden_size=64, intermediate_size=128,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=256, bos_token_id=0, eos_token_id=1, initializer_range=0.25,
        rope_theta=10000.0,
    )
    kw.update(overrides, **more)
    cfg = getattr(transformers, cfg_name)(**kw)
    cfg._attn_implementation = "eager"
    torch.manual_seed(0)
    model = getattr(transformers, model_name)(cfg).eval()
    with torch.no_grad():  # norms start at 1 (0 for Gemma): perturb them so they count
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith(".bias"):
                p.add_(0.2 * torch.randn_like(p))
    model.save_pretrained(d, safe_serialization=True)
    tok.save_pretrained(d)
    return model, tok


def _load(path: Path) -> Any:
    # F32 KV cache: the default F16 cache would add its own rounding to the conversion's
    return llama_cpp.Llama(str(path), n_ctx=64, n_batch=64, logits_all=True, verbose=False,
                           n_threads=2, type_k=llama_cpp.GGML_TYPE_F32,
                           type_v=llama_cpp.GGML_TYPE_F32)


def _logits(llm: Any, ids: list[int]) -> np.ndarray:
    llm.reset()
    llm.eval(ids)
    return np.asarray(llm.scores[: len(ids)], dtype=np.float32)


@dataclasses.dataclass
class Converted:
    arch: str
    spec: Any
    path: Path
    ids: list[int]
    ref: np.ndarray  # transformers' float32 logits of `ids`
    tok: Any
    llm: Any  # the F16 file in llama.cpp
    f32_logits: np.ndarray  # llama.cpp's logits of the F32 file


@pytest.fixture(scope="module")
def corpus() -> str:
    return DATA.read_text(encoding="utf-8")[:8000]


@pytest.fixture(scope="module", params=list(CASES))
def converted(request: Any, corpus: str, tmp_path_factory: Any) -> Any:
    arch = request.param
    d = tmp_path_factory.mktemp(arch) / f"tiny-{arch}"
    model, tok = build_tiny(arch, d, corpus)
    ids = tok(TEXT).input_ids[:N_TOKENS]
    assert len(ids) == N_TOKENS
    with torch.no_grad():
        ref = model(torch.tensor([ids])).logits[0].float().numpy()
    spec = inspect_model(d)
    f32 = _load(convert_hf_to_gguf(spec, d.parent / "f32", out_type="F32"))
    f32_logits = _logits(f32, ids)
    f32.close()
    path = convert_hf_to_gguf(spec, d.parent / "gguf")
    llm = _load(path)
    yield Converted(arch, spec, path, ids, ref, tok, llm, f32_logits)
    llm.close()


def _rel(got: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(got - ref).max() / np.abs(ref).max())


def test_f16_logits_match_transformers(converted: Converted) -> None:
    c = converted
    got = _logits(c.llm, c.ids)
    assert _rel(got, c.ref) < 1e-2, f"{c.arch}: max |diff| / max |logit| = {_rel(got, c.ref):.2e}"
    assert (got.argmax(-1) == c.ref.argmax(-1)).all(), f"{c.arch}: top-1 differs"


def test_f32_logits_match_transformers_tightly(converted: Converted) -> None:
    # An F32 file leaves only compute differences: ~1e-6 measured. Gemma's GELU is looked up in
    # ggml's F16 table (GGML_GELU_FP16 in ggml-cpu/vec.h), ~5e-4 measured.
    c = converted
    tol = 2e-3 if c.arch.startswith("gemma") else 1e-4
    assert _rel(c.f32_logits, c.ref) < tol, f"{c.arch}: {_rel(c.f32_logits, c.ref):.2e}"


def test_tokenizer_round_trip(converted: Converted) -> None:
    c = converted
    ids = c.llm.tokenize(TEXT.encode(), add_bos=True, special=False)
    assert ids == c.tok(TEXT).input_ids, c.arch
    assert ids[0] == 0  # BOS, as the HF post-processor adds it
    assert len(ids) > N_TOKENS
    assert c.llm.detokenize(ids).decode() == TEXT


def test_tensors_and_metadata(converted: Converted) -> None:
    import gguf

    c, spec = converted, converted.spec
    reader = gguf.GGUFReader(str(c.path))
    names = {t.name for t in reader.tensors}
    # Gemma's lm_head (if stored) is dropped: llama.cpp ties it to token_embd
    assert names == {t.canonical for t in spec.tensors
                     if not (c.arch.startswith("gemma") and t.name == "lm_head.weight")}
    for t in reader.tensors:
        want = "F32" if len(t.shape) == 1 else "F16"
        assert t.tensor_type.name == want, t.name
    f = reader.fields
    arch = spec.architecture
    assert f["general.architecture"].contents() == arch
    assert f[f"{arch}.block_count"].contents() == 2
    assert f[f"{arch}.context_length"].contents() == 256
    assert f[f"{arch}.attention.head_count_kv"].contents() == 2
    assert f["general.file_type"].contents() == int(gguf.LlamaFileType.MOSTLY_F16)
    assert len(f["tokenizer.ggml.tokens"].contents()) == spec.vocab_size
    spm = CASES[c.arch][2] == "spm"
    assert f["tokenizer.ggml.model"].contents() == ("llama" if spm else "gpt2")
    assert f["tokenizer.ggml.pre"].contents() == ("default" if spm else CASES[c.arch][2])
    assert f["tokenizer.ggml.bos_token_id"].contents() == 0
    assert f["tokenizer.ggml.eos_token_id"].contents() == 1
    assert c.path == output_path(spec, c.path.parent) and c.path.name.endswith("-F16.gguf")
    assert [p.name for p in c.path.parent.iterdir()] == [c.path.name]  # no temp file left


def test_bf16_output(tmp_path: Path, corpus: str) -> None:
    import gguf

    model, tok = build_tiny("llama", tmp_path / "m", corpus)
    path = convert_hf_to_gguf(inspect_model(tmp_path / "m"), tmp_path / "out", out_type="bf16")
    assert path.name.endswith("-BF16.gguf")
    types = {t.name: t.tensor_type.name for t in gguf.GGUFReader(str(path)).tensors}
    assert types["blk.0.attn_q.weight"] == "BF16" and types["blk.0.attn_norm.weight"] == "F32"
    ids = tok(TEXT).input_ids[:N_TOKENS]
    with torch.no_grad():
        ref = model(torch.tensor([ids])).logits[0].numpy()
    llm = _load(path)
    assert _rel(_logits(llm, ids), ref) < 5e-2  # bf16 keeps 8 bits of mantissa: 2.5e-2 measured
    llm.close()


def test_unsupported_architecture_is_bad_input(tmp_path: Path) -> None:
    from tests.conftest import tiny_hf_model

    d, _ = tiny_hf_model(tmp_path)
    spec = inspect_model(d)
    phi = dataclasses.replace(spec, extra={**spec.extra, "hf_architecture": "PhiForCausalLM"})
    with pytest.raises(BadInput) as e:
        convert_hf_to_gguf(phi, tmp_path / "out")
    line = e.value.one_line()
    assert "PhiForCausalLM" in line and "LlamaForCausalLM" in line and "\n" not in line
    with pytest.raises(BadInput, match="out_type"):
        convert_hf_to_gguf(spec, tmp_path / "out", out_type="Q4_0")
    with pytest.raises(BadInput, match="tokenizer"):  # the directory has no tokenizer at all
        convert_hf_to_gguf(spec, tmp_path / "out")
    assert not any((tmp_path / "out").glob("*"))  # nothing half-written


def test_unknown_pre_tokenizer_and_gguf_source_are_bad_input(tmp_path: Path,
                                                              embedded_gguf: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    from tests.conftest import tiny_hf_model

    d, _ = tiny_hf_model(tmp_path, vocab_size=300)
    tok = Tokenizer(models.BPE(vocab={chr(65 + i): i for i in range(26)}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()  # no llama.cpp equivalent
    tok.decoder = decoders.ByteLevel()
    tok.save(str(d / "tokenizer.json"))
    with pytest.raises(BadInput, match="pre-tokenizer not recognised"):
        convert_hf_to_gguf(inspect_model(d), tmp_path / "out")
    with pytest.raises(BadInput, match="already a GGUF"):
        convert_hf_to_gguf(inspect_model(embedded_gguf), tmp_path / "out")


def test_llama3_rope_scaling_writes_rope_freqs(tmp_path: Path, corpus: str) -> None:
    import gguf

    rope = {"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 64}
    model, tok = build_tiny("llama", tmp_path / "m", corpus, rope_parameters=rope)
    path = convert_hf_to_gguf(inspect_model(tmp_path / "m"), tmp_path / "out", out_type="F32")
    factors = {t.name: t for t in gguf.GGUFReader(str(path)).tensors}["rope_freqs.weight"]
    assert factors.data[0] == 1.0 and factors.data[-1] == 8.0  # high freqs kept, low ones scaled
    ids = tok(TEXT).input_ids[:N_TOKENS]
    with torch.no_grad():
        ref = model(torch.tensor([ids])).logits[0].numpy()
    llm = _load(path)
    assert _rel(_logits(llm, ids), ref) < 1e-4
    llm.close()
