"""The fast GGUF loader against transformers' own, and q/k row order vs block quantization."""

from __future__ import annotations

import mmap
from pathlib import Path

import numpy as np
import pytest
import torch

from advisor import formats
from advisor.inspect.gguf_header import read_header
from advisor.sensitivity.loader import load_gguf_model
from kernels.ggml_quant import dequantize, quant_dequant

pytestmark = pytest.mark.slow


def _gguf_tensor(path: Path, name: str) -> np.ndarray:
    """A tensor as stored in the GGUF (llama.cpp row order), dequantized by libggml."""
    header = read_header(path)
    t = next(t for t in header.tensors if t.name == name)
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        raw = np.frombuffer(buf, np.uint8, t.nbytes, header.data_offset + t.offset).copy()
    return dequantize(raw, int(t.type), (t.ne[1], t.ne[0]))


def _unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    """transformers' reverse of convert_hf_to_gguf.py's q/k permutation (rows only)."""
    dim = w.shape[0] // n_head // 2
    return w.reshape(n_head, dim, 2, w.shape[1]).swapaxes(2, 1).reshape(w.shape)


@pytest.mark.parametrize("name, heads", [("blk.0.attn_q.weight", 9), ("blk.7.attn_k.weight", 3)])
def test_hf_row_order_quantizes_like_the_gguf_rows(embedded_gguf: Path, name: str,
                                                   heads: int) -> None:
    loaded = load_gguf_model(embedded_gguf)
    hf = loaded.params[name].detach().numpy()
    gguf_rows = _gguf_tensor(embedded_gguf, name)
    np.testing.assert_array_equal(hf, _unpermute(gguf_rows, heads))
    importance = np.asarray(np.random.default_rng(0).uniform(0.1, 2.0, hf.shape[1]), np.float32)
    for gtype in ("Q4_0", "Q5_0", "Q5_1", "Q8_0", "IQ4_NL"):
        tid = formats.ggml_type(gtype).type_id
        for imp in (None, importance):
            # a block never crosses a row: permuting rows commutes with the round trip
            np.testing.assert_array_equal(quant_dequant(hf, tid, imp),
                                          _unpermute(quant_dequant(gguf_rows, tid, imp), heads))


def test_fast_loader_equals_transformers(embedded_gguf: Path) -> None:
    import transformers

    fast = load_gguf_model(embedded_gguf)
    ref = transformers.AutoModelForCausalLM.from_pretrained(
        str(embedded_gguf.parent), gguf_file=embedded_gguf.name, dtype=torch.float32)
    ref_params = dict(ref.named_parameters())
    got = dict(fast.model.named_parameters())
    assert set(got) == set(ref_params)
    for n, p in got.items():
        assert torch.equal(p, ref_params[n]), n
    ids = torch.tensor([[1, 504, 3145, 314, 253, 1789, 28, 198]])
    with torch.no_grad():
        assert torch.equal(fast.model(ids).logits, ref.eval()(ids).logits)
