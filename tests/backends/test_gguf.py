"""The GGUF backend on the embedded SmolLM2-135M (Q4_1; rows of 576 weights, so most K-quant
tensors fall back, tied embedding): plan fidelity, bit identity with llama.cpp's preset path,
the importance matrix, atomic artifacts and serving files."""

from __future__ import annotations

import dataclasses
import logging
import mmap
import subprocess
from pathlib import Path

import numpy as np
import pytest

from advisor import formats
from advisor.artifact import REPORT_FILE, is_complete, staging, write_report
from advisor.artifact.serving import Serving
from advisor.errors import BadInput
from advisor.figures import BYTES, Figure, Origin
from advisor.inspect.gguf_header import read_header
from advisor.modelspec import ModelSpec
from advisor.plan import QuantPlan
from advisor.probe.catalogue import load_target
from advisor.space.named import plan_for_format
from advisor.textdata import default_evaluation_text
from backends import get_backend
from backends.base import QuantizeOptions
from backends.gguf.imatrix import Imatrix, imatrix_for
from backends.gguf.quantize import quantize_file
from backends.gguf.serve import modelfile
from tests.backends.conftest import THREADS, Quantized

pytestmark = pytest.mark.slow
llama_cpp = pytest.importorskip("llama_cpp")
log = logging.getLogger(__name__)

KL_TOKENS = 256


def _tensor_bytes(path: Path) -> dict[str, tuple[str, bytes]]:
    header = read_header(path)
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        return {t.name: (t.type.name, bytes(mm[t.file_offset:t.file_offset + t.nbytes]))
                for t in header.tensors}


@pytest.fixture(scope="session")
def imatrix(embedded_spec: ModelSpec, calib_text: str) -> Imatrix:
    return imatrix_for(Path(embedded_spec.path), calib_text, threads=THREADS)


# --- plan -> file ------------------------------------------------------------------------------

@pytest.mark.parametrize("preset", ["Q4_K_M", "Q3_K_M", "Q6_K"])
@pytest.mark.parametrize("with_imatrix", [False, True], ids=["plain", "imatrix"])
def test_preset_plan_is_bit_identical_to_llama_cpp_preset(
        preset: str, with_imatrix: bool, embedded_spec: ModelSpec, quantized: Quantized,
        imatrix: Imatrix, tmp_path: Path) -> None:
    """The preset's per-tensor plan, written through exact-name overrides, gives the very bytes
    of `llama-quantize [--imatrix] model.gguf out.gguf PRESET`."""
    plan = plan_for_format(embedded_spec, preset)
    out, written = quantized(plan, with_imatrix)
    assert written.options["imatrix"] is with_imatrix
    assert written.tensor_formats == plan.tensor_formats
    assert written.options["fallbacks"] == {}

    reference = tmp_path / "preset.gguf"
    quantize_file(Path(embedded_spec.path), reference, ftype=formats.preset(preset).ftype,
                  imatrix=imatrix if with_imatrix else None, threads=THREADS)
    ours, theirs = _tensor_bytes(out / "model.gguf"), _tensor_bytes(reference)
    assert ours.keys() == theirs.keys()
    differ = [n for n in ours if ours[n] != theirs[n]]
    assert not differ, f"{len(differ)} tensors differ from llama.cpp's {preset}: {differ[:5]}"


def test_written_types_follow_plan_or_documented_fallback(embedded_spec: ModelSpec,
                                                          quantized: Quantized) -> None:
    base = plan_for_format(embedded_spec, "Q8_0").tensor_formats
    wanted = {
        "blk.0.attn_q.weight": "Q4_K",  # 576 % 256: -> Q5_0
        "blk.0.attn_v.weight": "Q6_K",  # -> Q8_0
        "blk.0.ffn_up.weight": "Q2_K",  # -> Q4_0
        "blk.1.attn_k.weight": "IQ4_XS",  # -> IQ4_NL
        "blk.0.ffn_down.weight": "Q4_K",  # rows of 1536 = 6 x 256: fits
        "blk.1.ffn_down.weight": "Q3_K",  # fits
        "token_embd.weight": "Q6_K",  # through token_embedding_type: -> Q8_0
        "blk.2.attn_q.weight": "F16",
        "blk.3.attn_q.weight": "Q4_1",  # the source type: copied
        "blk.0.attn_norm.weight": "F16",  # 1-D: never quantized, stays F32
    }
    plan = QuantPlan("gguf", {**base, **wanted}, label="fidelity")
    out, written = quantized(plan, False)

    on_disk = read_header(out / "model.gguf").types()
    assert on_disk == written.tensor_formats
    expected = {
        "blk.0.attn_q.weight": "Q5_0", "blk.0.attn_v.weight": "Q8_0",
        "blk.0.ffn_up.weight": "Q4_0", "blk.1.attn_k.weight": "IQ4_NL",
        "blk.0.ffn_down.weight": "Q4_K", "blk.1.ffn_down.weight": "Q3_K",
        "token_embd.weight": "Q8_0", "blk.2.attn_q.weight": "F16",
        "blk.3.attn_q.weight": "Q4_1", "blk.0.attn_norm.weight": "F32",
    }
    for name, tt in expected.items():
        assert on_disk[name] == tt, name
    for t in embedded_spec.tensors:  # every other tensor: as planned, or its fallback
        planned = plan.tensor_formats[t.canonical]
        if len(t.shape) >= 2:
            assert on_disk[t.canonical] == formats.fallback(planned, t.row_size), t.canonical
        else:
            assert on_disk[t.canonical] == t.dtype, t.canonical
    fallbacks = written.options["fallbacks"]
    assert fallbacks == {n: [plan.tensor_formats[n], on_disk[n]] for n in on_disk
                         if on_disk[n] != plan.tensor_formats[n]}
    assert fallbacks["blk.0.attn_q.weight"] == ["Q4_K", "Q5_0"]
    assert "blk.0.ffn_down.weight" not in fallbacks


def test_plan_errors_are_bad_input(embedded_spec: ModelSpec, tmp_path: Path) -> None:
    backend = get_backend("gguf")
    base = plan_for_format(embedded_spec, "Q8_0").tensor_formats
    cases = [
        ({**base, "blk.99.attn_q.weight": "Q8_0"}, QuantizeOptions()),  # no such tensor
        ({**base, "blk.0.ffn_down.weight": "Q8_1"}, QuantizeOptions()),  # not a quantize target
        ({**base, "blk.0.ffn_down.weight": "IQ2_XXS"}, QuantizeOptions(imatrix=False)),
    ]
    for formats_, opts in cases:
        with pytest.raises(BadInput):
            backend.quantize(embedded_spec, QuantPlan("gguf", formats_), tmp_path / "x", opts)
        assert not (tmp_path / "x" / "model.gguf").exists()


# --- importance matrix -------------------------------------------------------------------------

def test_imatrix_is_mean_squared_input_of_each_matmul(embedded_spec: ModelSpec,
                                                      calib_text: str, imatrix: Imatrix) -> None:
    """Checked against numpy: blk.0's attention input is rms_norm(embedding) * attn_norm."""
    from gguf.quants import dequantize

    from backends.gguf.runtime import LlamaSession

    path = Path(embedded_spec.path)
    v = imatrix.values
    assert imatrix.n_chunks == 1 and imatrix.n_tokens == 512
    assert "token_embd.weight" not in v and "output.weight" not in v  # llama-imatrix skips both
    assert len(v) == 7 * embedded_spec.n_layers
    assert v["blk.0.ffn_down.weight"].shape == (embedded_spec.intermediate_size,)
    np.testing.assert_array_equal(v["blk.3.attn_q.weight"], v["blk.3.attn_v.weight"])
    np.testing.assert_array_equal(v["blk.3.ffn_gate.weight"], v["blk.3.ffn_up.weight"])

    with LlamaSession(path, n_ctx=64, threads=THREADS) as s:
        tokens = s.tokenize(calib_text)[:512]
        if s.add_bos:
            tokens[0] = s.bos
    header = read_header(path)
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        info = {t.name: t for t in header.tensors}
        emb, norm = info["token_embd.weight"], info["blk.0.attn_norm.weight"]
        raw = np.frombuffer(mm[emb.file_offset:emb.file_offset + emb.nbytes], dtype=np.uint8)
        qtype = emb.type
        rows = dequantize(raw.reshape(emb.shape[0], -1)[tokens], qtype)
        w = np.frombuffer(mm[norm.file_offset:norm.file_offset + norm.nbytes], dtype=np.float32)
    eps = header.kv["llama.attention.layer_norm_rms_epsilon"]
    x = rows.astype(np.float64)
    x = x / np.sqrt((x * x).mean(axis=1, keepdims=True) + eps) * w
    np.testing.assert_allclose(v["blk.0.attn_q.weight"], (x * x).mean(axis=0), rtol=1e-4)


def test_imatrix_cache_round_trip(embedded_spec: ModelSpec, calib_text: str, imatrix: Imatrix,
                                  imatrix_cache: Path) -> None:
    # this fixture's key: the whole (one-chunk) text, max_chunks 0; quantize tests add m4 keys
    files = list((imatrix_cache / "imatrix").glob("*-m0-*.npz"))
    assert len(files) == 1
    again = imatrix_for(Path(embedded_spec.path), calib_text)  # served from the cache
    assert again.values.keys() == imatrix.values.keys()
    for k, arr in imatrix.values.items():
        np.testing.assert_array_equal(again.values[k], arr)


def _kl(ref: np.ndarray, test: np.ndarray) -> float:
    def log_softmax(x: np.ndarray) -> np.ndarray:
        x = x.astype(np.float64) - x.max(axis=-1, keepdims=True)
        return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))

    p, q = log_softmax(ref), log_softmax(test)
    return float((np.exp(p) * (p - q)).sum(axis=-1).mean())


def test_imatrix_lowers_kl_on_held_out_text(embedded_spec: ModelSpec,
                                            quantized: Quantized) -> None:
    """Q2_K with the importance matrix is closer to the source model on evaluation.txt (text
    the calibration never saw) than Q2_K without."""
    backend = get_backend("gguf")
    source = backend.load(Path(embedded_spec.path), n_ctx=KL_TOKENS, threads=THREADS)
    try:
        tokens = source.tokenize(default_evaluation_text())[:KL_TOKENS]
        reference = source.logits(tokens)
    finally:
        source.close()
    kl = {}
    plan = plan_for_format(embedded_spec, "Q2_K")
    for with_imatrix in (False, True):
        out, written = quantized(plan, with_imatrix)
        assert written.options["imatrix"] is with_imatrix
        runner = backend.load(out, n_ctx=KL_TOKENS, threads=THREADS)
        try:
            kl[with_imatrix] = _kl(reference, runner.logits(tokens))
        finally:
            runner.close()
        size = (out / "model.gguf").stat().st_size
        print(f"Q2_K imatrix={with_imatrix}: KL {kl[with_imatrix]:.4f} nats/token over "
              f"{KL_TOKENS} tokens, {size / 2**20:.1f} MiB")
    assert kl[True] < kl[False]


# --- atomic artifacts --------------------------------------------------------------------------

def test_interrupted_quantize_leaves_no_report(embedded_spec: ModelSpec,
                                               tmp_path: Path) -> None:
    backend = get_backend("gguf")
    out = tmp_path / "artifact"
    plan = plan_for_format(embedded_spec, "Q8_0")
    with pytest.raises(KeyboardInterrupt):
        with staging(out) as stage:
            backend.quantize(embedded_spec, plan, stage, QuantizeOptions(threads=THREADS))
            assert (stage / "model.gguf").is_file()
            raise KeyboardInterrupt  # Ctrl-C after the weights, before the report
    assert not out.exists() and not is_complete(out)
    assert list(tmp_path.iterdir()) == []  # the .partial directory is gone too

    with staging(out) as stage:  # the same run, not interrupted
        written = backend.quantize(embedded_spec, plan, stage, QuantizeOptions(threads=THREADS))
        write_report(stage, {"plan": written.to_dict()})
    assert is_complete(out) and (out / "model.gguf").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["artifact"]


def test_failing_quantize_leaves_no_report(embedded_spec: ModelSpec, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import backends.gguf.backend as gguf_backend

    def half_written(src: Path, dst: Path, *args: object, **kwargs: object) -> None:
        dst.write_bytes(b"GGUF" + b"\0" * 64)
        raise RuntimeError("disk full")

    monkeypatch.setattr(gguf_backend, "run_job", half_written)
    out = tmp_path / "artifact"
    with pytest.raises(RuntimeError, match="disk full"), staging(out) as stage:
        get_backend("gguf").quantize(embedded_spec, plan_for_format(embedded_spec, "Q8_0"),
                                     stage, QuantizeOptions())
        write_report(stage, {})
    assert not (out / REPORT_FILE).exists()


# --- serving -----------------------------------------------------------------------------------

def test_serve_files(embedded_spec: ModelSpec, quantized: Quantized) -> None:
    out, written = quantized(plan_for_format(embedded_spec, "Q8_0"), False)
    backend = get_backend("gguf")
    serving = Serving(4096, parallel=3, python="/opt/py env/bin/python3")
    cpu = backend.serve_files(out, written, load_target("x86-server"), serving)
    gpu = backend.serve_files(out, written, load_target("rtx4090"), serving)
    for files in (cpu, gpu):
        assert set(files) == {"serve.sh", "Modelfile"}
        script = files["serve.sh"]
        # llama-server's -c is the total over its -np slots
        assert "llama-server -m model.gguf -c 12288 -np 3" in script
        assert "-m llama_cpp.server --model model.gguf --n_ctx 4096" in script
        assert '--host "$HOST"' in script and "${PORT:-8080}" in script
        assert "RECORDED='/opt/py env/bin/python3'" in script  # quoted for sh
        subprocess.run(["sh", "-n"], input=script, text=True, check=True)
    assert "-ngl 0 " in cpu["serve.sh"] and "--n_gpu_layers 0 " in cpu["serve.sh"]
    assert "-ngl 999 " in gpu["serve.sh"] and "--n_gpu_layers -1 " in gpu["serve.sh"]
    rtx = load_target("rtx4090")
    tiny_gpu = dataclasses.replace(rtx, accelerators=(dataclasses.replace(
        rtx.accelerators[0], memory=Figure(64e6, BYTES, Origin.DATASHEET)),))
    small = backend.serve_files(out, written, tiny_gpu, Serving(4096))["serve.sh"]
    assert "-ngl 0 " in small and "exceeds" in small  # 140 MB of weights do not fit 64 MB
    modelfile = cpu["Modelfile"]
    assert "FROM ./model.gguf" in modelfile and "PARAMETER num_ctx 4096" in modelfile
    assert "OLLAMA_NUM_PARALLEL=3" in modelfile
    assert "<|im_start|>{{ .Role }}" in modelfile  # SmolLM2's ChatML template, translated
    assert 'PARAMETER stop "<|im_end|>"' in modelfile
    assert 'SYSTEM """You are a helpful AI assistant named SmolLM' in modelfile
    assert backend.serves_on(load_target("x86-server"))
    assert backend.serves_on(load_target("m3-max"))


def test_a_system_prompt_that_would_write_directives_is_left_out() -> None:
    """Issue 22, finding 7: the default system prompt comes from the model file; a triple quote
    in it would close Ollama's value and let the rest write Modelfile directives."""
    jinja = ('<|im_start|>system\nYou are nice.""" FROM /etc/passwd SYSTEM """x<|im_end|>'
             '{% for m in messages %}<|im_start|>{{ m.role }}{% endfor %}')
    text = modelfile("model.gguf", Serving(2048), jinja)
    assert "FROM /etc/passwd" not in text and "SYSTEM" not in text
    assert text.count("FROM ") == 1 and "left out" in text
    plain = modelfile("model.gguf", Serving(2048), "<|im_start|>system\nBe brief.<|im_end|>")
    assert 'SYSTEM """Be brief."""' in plain


# --- a Hugging Face source ---------------------------------------------------------------------

def _tiny_hf_llama(d: Path, corpus: str) -> Path:
    """A random Llama with rows of 256 (K-quants fit) and a byte-level BPE tokenizer."""
    import torch
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator([corpus], trainers.BpeTrainer(
        vocab_size=384, special_tokens=["<s>", "</s>"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A",
                                                       special_tokens=[("<s>", 0)])
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>",
                                                eos_token="</s>")
    cfg = transformers.LlamaConfig(
        vocab_size=len(fast), hidden_size=256, intermediate_size=512, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        bos_token_id=0, eos_token_id=1)
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(cfg).save_pretrained(d, safe_serialization=True)
    fast.save_pretrained(d)
    return d


def test_hf_source_is_converted_then_quantized(tmp_path: Path, calib_text: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("tokenizers")
    from advisor.inspect import inspect_model
    from backends.gguf import f16_reference

    monkeypatch.setenv("QUANT_ADVISOR_CACHE", str(tmp_path / "cache"))
    spec = inspect_model(str(_tiny_hf_llama(tmp_path / "hf", calib_text)))
    plan = plan_for_format(spec, "Q4_K_M")
    out = tmp_path / "out"
    backend = get_backend("gguf")
    written = backend.quantize(spec, plan, out, QuantizeOptions(calib_text=calib_text,
                                                                threads=THREADS))
    assert sorted(p.name for p in out.iterdir()) == ["model.gguf"]  # no conversion beside it
    # converted once into the cache: the F16 reference, and the source of every later quantize
    converted = list((tmp_path / "cache" / "references").glob("*/*.gguf"))
    assert converted == [f16_reference(spec)]
    stamp = converted[0].stat().st_mtime_ns
    backend.quantize(spec, plan_for_format(spec, "Q8_0"), tmp_path / "out8",
                     QuantizeOptions(calib_text=calib_text, threads=THREADS))
    assert list((tmp_path / "cache" / "references").glob("*/*.gguf")) == converted
    assert converted[0].stat().st_mtime_ns == stamp
    assert written.options["imatrix"] is True
    assert written.tensor_formats == plan.tensor_formats
    assert read_header(out / "model.gguf").types() == plan.tensor_formats
    assert "Q4_K" in plan.tensor_formats.values()
    runner = backend.load(out, n_ctx=64, threads=THREADS)
    try:
        tokens = runner.tokenize("Sunlight looks white, but it is a mixture")
        assert runner.logits(tokens).shape == (len(tokens), spec.vocab_size)
    finally:
        runner.close()


def test_a_vocabulary_only_session_tokenizes_as_the_model_does(embedded_gguf: Path) -> None:
    """The sensitivity stage tokenizes with the vocabulary alone: no weights mapped (a float
    model's whole file would count in the process's peak RSS), the same tokens."""
    from advisor.textdata import default_calibration_text
    from backends.gguf import LlamaSession

    text = default_calibration_text()[:20000]
    with LlamaSession(embedded_gguf, n_ctx=64, threads=THREADS) as full:
        want = (full.tokenize(text), full.bos, full.add_bos, full.n_vocab)
    with LlamaSession(embedded_gguf, n_ctx=64, vocab_only=True) as vocab:
        got = (vocab.tokenize(text), vocab.bos, vocab.add_bos, vocab.n_vocab)
    assert got == want and len(got[0]) > 4000
