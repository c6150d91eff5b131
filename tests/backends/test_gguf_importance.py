"""The streamed importance matrix (one layer in float at a time) is llama.cpp's own, within the
F16 rounding of llama.cpp's activations."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import backends.gguf.layers as stream
from advisor.inspect import inspect_model
from backends.gguf.convert import convert_hf_to_gguf
from backends.gguf.imatrix import compute_imatrix, imatrix_for, streamed
from tests.backends.test_gguf_convert import DATA, build_tiny

TEXT = DATA.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def tiny_f16(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("tiny-imatrix")
    build_tiny("llama", d / "hf", TEXT[:8000], num_hidden_layers=3)
    return convert_hf_to_gguf(inspect_model(d / "hf"), d / "gguf", out_type="F16")


def test_streamed_imatrix_matches_llama_cpp(tiny_f16: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stream, "STREAM_FROM", math.inf)
    assert not streamed(tiny_f16)
    by_llama = compute_imatrix(tiny_f16, TEXT, threads=2, chunk_tokens=64, max_chunks=3)
    monkeypatch.setattr(stream, "STREAM_FROM", 0)
    assert streamed(tiny_f16)
    by_sweep = compute_imatrix(tiny_f16, TEXT, threads=2, chunk_tokens=64, max_chunks=3)
    assert (by_sweep.n_tokens, by_sweep.n_chunks) == (by_llama.n_tokens, by_llama.n_chunks) \
        == (192, 3)
    assert set(by_sweep.values) == set(by_llama.values)  # every blk.* matmul, no head
    assert all(n.startswith("blk.") for n in by_sweep.values)
    for name, want in by_llama.values.items():
        got = by_sweep.values[name]
        assert got.shape == want.shape and got.dtype == np.float32, name
        np.testing.assert_allclose(got, want, rtol=2e-2, atol=1e-6, err_msg=name)


def test_the_streamed_matrix_has_its_own_cache_entry(tiny_f16: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stream, "STREAM_FROM", 0)
    first = imatrix_for(tiny_f16, TEXT, max_chunks=2)
    again = imatrix_for(tiny_f16, TEXT, max_chunks=2)
    assert all(np.array_equal(first.values[n], again.values[n]) for n in first.values)
    monkeypatch.setattr(stream, "STREAM_FROM", math.inf)
    other = imatrix_for(tiny_f16, TEXT, max_chunks=2)  # llama.cpp's: computed, not the cached
    assert any(not np.array_equal(first.values[n], other.values[n]) for n in first.values)
