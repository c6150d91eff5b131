"""Acceptance: the embedded model's Q4_K_M against its F16 reference, checked by an independent
straightforward computation (full float64 softmax over llama.cpp's logits of both models).

The independent side runs llama_cpp.Llama itself with the same attention path as the GGUF
backend's runner (flash attention on, llama.cpp's default); otherwise both sides use nothing of
advisor.measure.quality.
"""

from __future__ import annotations

import ctypes
import os
import time
from pathlib import Path

import numpy as np
import pytest

from advisor.inspect import inspect_model
from advisor.measure.quality import (
    WindowConfig,
    load_text,
    measure_quality,
    reference_logprobs,
)
from backends import get_backend
from backends.gguf import make_f16_reference

pytestmark = pytest.mark.slow
llama_cpp = pytest.importorskip("llama_cpp")

N_CTX = 512
N_WINDOWS = 2
THREADS = os.cpu_count() or 1


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("qa-cache")


@pytest.fixture(scope="module")
def f16(embedded_gguf: Path, cache: Path) -> Path:
    return make_f16_reference(embedded_gguf, cache)


@pytest.fixture(scope="module")
def q4_k_m(embedded_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    dst = tmp_path_factory.mktemp("cand") / "model.gguf"
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M
    params.allow_requantize = True
    params.nthread = THREADS
    rc = llama_cpp.llama_model_quantize(str(embedded_gguf).encode(), str(dst).encode(),
                                        ctypes.byref(params))
    assert rc == 0
    return dst


def test_f16_reference_written_once(embedded_gguf: Path, f16: Path, cache: Path) -> None:
    spec = inspect_model(f16)
    assert spec.source_quantization is None and spec.dtype_counts().get("F16", 0) > 0
    assert spec.n_params == inspect_model(embedded_gguf).n_params
    mtime = f16.stat().st_mtime_ns
    assert make_f16_reference(embedded_gguf, cache) == f16 and f16.stat().st_mtime_ns == mtime
    assert make_f16_reference(f16, cache) == f16  # a float model is its own reference


def independent_scores(model: Path, text: str) -> list[np.ndarray]:
    """Float64 log-probs of the scored half of each window, straight from llama_cpp.Llama."""
    llm = llama_cpp.Llama(str(model), n_ctx=N_CTX, logits_all=True, verbose=False,
                          n_threads=THREADS, n_threads_batch=THREADS, flash_attn=True)
    tokens = llm.tokenize(text.encode(), add_bos=True)
    bos = llm.tokenize(b"", add_bos=True)
    out = []
    for w in range(N_WINDOWS):
        chunk = tokens[w * N_CTX:(w + 1) * N_CTX]
        if bos:
            chunk[0] = bos[0]
        llm.reset()
        llm.eval(chunk)
        x = np.array(llm.scores[N_CTX // 2: N_CTX - 1], dtype=np.float64)
        x -= x.max(axis=1, keepdims=True)
        out.append(x - np.log(np.exp(x).sum(axis=1, keepdims=True)))
    llm.close()
    return out


def test_q4_k_m_kl_agrees_with_independent_computation(f16: Path, q4_k_m: Path,
                                                       cache: Path) -> None:
    text = load_text()
    cfg = WindowConfig(n_ctx=N_CTX, max_windows=N_WINDOWS)
    t0 = time.perf_counter()
    ref = reference_logprobs(f16, text, cfg, cache_dir=cache, threads=THREADS)
    t_ref = time.perf_counter() - t0
    assert ref.computed and ref.n_windows == N_WINDOWS
    cand = get_backend("gguf").load(q4_k_m, n_ctx=N_CTX, threads=THREADS)
    try:
        q = measure_quality(cand, ref)
    finally:
        cand.close()

    lp, lq = independent_scores(f16, text), independent_scores(q4_k_m, text)
    kl = np.concatenate([(np.exp(p) * (p - c)).sum(axis=1) for p, c in zip(lp, lq)])
    agree = np.concatenate([p.argmax(1) == c.argmax(1) for p, c in zip(lp, lq)])
    print(f"\nQ4_K_M vs F16: ours mean KL {q.mean_kl.value:.6f} p99 {q.p99_kl.value:.5f} "
          f"top-1 {q.top1_agreement.value:.4f} ppl {q.perplexity.value:.3f} "
          f"(ref {q.reference_perplexity.value:.3f}); independent mean KL {kl.mean():.6f} "
          f"p99 {np.percentile(kl, 99):.5f} top-1 {agree.mean():.4f}; "
          f"reference {t_ref:.1f} s, candidate {q.eval_seconds.value:.1f} s")
    assert q.n_tokens == kl.size == N_WINDOWS * (N_CTX - 1 - N_CTX // 2)
    assert 0.005 < kl.mean() < 0.5  # Q4_K_M of a 135M model: clearly lossy, still sane
    assert abs(q.mean_kl.value / kl.mean() - 1) < 0.15
    assert abs(q.p99_kl.value / np.percentile(kl, 99) - 1) < 0.15
    assert abs(q.top1_agreement.value - agree.mean()) < 0.02
    assert 1 < q.reference_perplexity.value < q.perplexity.value * 1.1

    t0 = time.perf_counter()
    again = reference_logprobs(f16, text, cfg, cache_dir=cache, threads=THREADS)
    assert not again.computed and time.perf_counter() - t0 < t_ref / 5
