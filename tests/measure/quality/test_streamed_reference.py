"""The streamed reference (one decoder layer in float at a time) gives llama.cpp's log-probs,
without mapping the model (issue 17's memory bound)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import advisor.measure.quality.streamed as streamed
import backends.gguf.layers as stream
from advisor.inspect import inspect_model
from advisor.measure.quality import WindowConfig, metrics, reference_logprobs
from backends.gguf.convert import convert_hf_to_gguf
from tests.backends.test_gguf_convert import DATA, build_tiny

TEXT = DATA.read_text(encoding="utf-8")
CFG = WindowConfig(n_ctx=32, max_windows=3)


@pytest.fixture(scope="module", params=[False, True], ids=["untied", "tied"])
def tiny_f16(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("tiny-ref")
    build_tiny("llama", d / "hf", TEXT[:8000], num_hidden_layers=3,
               tie_word_embeddings=request.param)
    return convert_hf_to_gguf(inspect_model(d / "hf"), d / "gguf", out_type="F16")


def _reference(path: Path, cache: Path, stream_from: float, monkeypatch: pytest.MonkeyPatch):
    with monkeypatch.context() as m:
        m.setattr(stream, "STREAM_FROM", stream_from)
        return reference_logprobs(path, TEXT, CFG, cache_dir=cache, threads=2, device="cpu")


def test_streamed_reference_matches_llama_cpp(tiny_f16: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    by_llama = _reference(tiny_f16, tmp_path, math.inf, monkeypatch)
    by_sweep = _reference(tiny_f16, tmp_path, 0, monkeypatch)
    assert by_llama.reference.endswith(":gguf-runner")
    assert by_sweep.reference.endswith(":torch-stream")
    assert by_sweep.computed and by_sweep.path != by_llama.path  # two caches, never mixed
    np.testing.assert_array_equal(by_sweep.tokens, by_llama.tokens)
    assert by_sweep.vocab == by_llama.vocab
    kls = [metrics.kl_divergence(by_llama.logprobs(w), by_sweep.logprobs(w))
           for w in range(by_llama.n_windows)]
    # F16 activations in llama.cpp's matmuls against float32 in torch: a tiny difference
    assert float(np.mean(np.concatenate(kls))) < 1e-4
    gap = np.abs(np.asarray(by_sweep.nll) - np.asarray(by_llama.nll))
    assert gap.mean() < 1e-2 and gap.max() < 5e-2  # nats per token (a wrong layer: nats)
    assert (by_sweep.top1 == by_llama.top1).mean() > 0.95
    again = _reference(tiny_f16, tmp_path, 0, monkeypatch)
    assert not again.computed and again.path == by_sweep.path  # read back from its cache


def test_the_sweep_never_maps_the_model(tiny_f16: Path) -> None:
    windows = streamed.tokenized_windows(tiny_f16, TEXT, CFG)
    seen = []
    for logits in streamed.streamed_logits(tiny_f16, windows, CFG, threads=1, device="cpu"):
        assert logits.shape == (CFG.n_scored, inspect_model(tiny_f16).vocab_size)
        seen.append(str(tiny_f16) in Path("/proc/self/maps").read_text())
    assert len(seen) == windows.shape[0] and not any(seen)


def test_only_large_models_of_the_llama_layout_stream(tiny_f16: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    assert not stream.streams(tiny_f16)  # far below STREAM_FROM: llama.cpp computes it
    monkeypatch.setattr(stream, "STREAM_FROM", inspect_model(tiny_f16).n_params)
    assert stream.streams(tiny_f16)
    build_tiny("qwen2", tmp_path / "hf", TEXT[:8000])
    other = convert_hf_to_gguf(inspect_model(tmp_path / "hf"), tmp_path / "gguf", out_type="F16")
    assert not stream.streams(other)  # not the llama layout, whatever its size
    ref = _reference(other, tmp_path / "cache", 0, monkeypatch)
    assert ref.reference.endswith(":gguf-runner")
