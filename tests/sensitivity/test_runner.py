"""The layer cache on a tiny random llama: a rerun from layer L equals a full forward pass."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
import torch

from advisor.sensitivity.loader import LoadedModel
from advisor.sensitivity.runner import LayerCache
from backends.hf import torch_threads
from tests.sensitivity.tiny import tiny_loaded

FIRST = 6


def _windows() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 97, size=(2, 12))


def _full_kl(loaded: LoadedModel, windows: np.ndarray, name: str, value: torch.Tensor) -> float:
    """KL of the whole model recomputed with `name` replaced (the definition)."""
    ids = torch.as_tensor(windows, dtype=torch.long)
    model = loaded.model
    p = loaded.params[name]
    with torch.no_grad():
        ref = torch.log_softmax(model(ids).logits[:, FIRST:].double(), -1)
        saved = p.data.clone()
        p.data = value
        try:
            cand = torch.log_softmax(model(ids).logits[:, FIRST:].double(), -1)
        finally:
            p.data = saved
    return float((ref.exp() * (ref - cand)).sum(-1).clamp_min(0).mean())


def _noisy(p: torch.Tensor, seed: int, scale: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return p.detach() + scale * p.detach().std() * torch.randn(p.shape, generator=g)


def test_canonical_names() -> None:
    untied = tiny_loaded(tie=False)
    assert {"token_embd.weight", "output.weight", "blk.0.attn_q.weight", "blk.2.ffn_down.weight",
            "blk.1.attn_norm.weight", "output_norm.weight"} <= set(untied.params)
    tied = tiny_loaded(tie=True)
    assert "output.weight" not in tied.params
    assert tied.model.get_output_embeddings().weight is tied.params["token_embd.weight"]


@pytest.mark.parametrize("tie", [False, True])
@pytest.mark.parametrize("name", ["blk.0.attn_q.weight", "blk.1.attn_v.weight",
                                  "blk.2.ffn_down.weight", "token_embd.weight", "output.weight"])
def test_cached_rerun_equals_full_forward(tie: bool, name: str) -> None:
    loaded = tiny_loaded(tie=tie)
    if name not in loaded.params:
        pytest.skip("tied: the head is the embedding")
    windows = _windows()
    with torch.no_grad():
        cache = LayerCache(loaded, windows, FIRST)
        value = _noisy(loaded.params[name], 1)
        got = cache.kl(name, [value])[0]
    want = _full_kl(loaded, windows, name, value)
    assert want > 1e-9
    assert got == pytest.approx(want, rel=1e-4)


def test_unperturbed_weights_cost_nothing() -> None:
    loaded = tiny_loaded()
    with torch.no_grad():
        cache = LayerCache(loaded, _windows(), FIRST)
        for name in ("blk.0.attn_k.weight", "blk.2.ffn_up.weight", "token_embd.weight"):
            assert cache.kl(name, [loaded.params[name].detach().clone()])[0] < 1e-12


def test_batched_layers_match_single_calls_and_leave_the_model_alone() -> None:
    loaded = tiny_loaded()
    before = {n: p.detach().clone() for n, p in loaded.params.items()}
    names = ["blk.1.attn_q.weight", "blk.1.attn_k.weight", "blk.1.ffn_gate.weight",
             "blk.2.attn_output.weight", "token_embd.weight"]
    with torch.no_grad():
        cache = LayerCache(loaded, _windows(), FIRST)
        items = [(n, _noisy(loaded.params[n], i)) for i, n in enumerate(names)]
        batched = cache.kl_many(items)
        single = [cache.kl(n, [v])[0] for n, v in items]
    assert batched == pytest.approx(single, rel=1e-5)
    for n, p in loaded.params.items():
        assert torch.equal(p, before[n]), n


def test_threads_measure_the_same() -> None:
    loaded = tiny_loaded()
    with torch.no_grad():
        cache = LayerCache(loaded, _windows(), FIRST)
    items = [(f"blk.{i % 3}.attn_v.weight", _noisy(loaded.params[f"blk.{i % 3}.attn_v.weight"],
                                                  i)) for i in range(6)]
    with torch.no_grad():
        want = [cache.kl(n, [v])[0] for n, v in items]
    got: dict[int, float] = {}

    def work(i: int) -> None:
        with torch.no_grad():
            got[i] = cache.kl(items[i][0], [items[i][1]])[0]

    with torch_threads(1):
        threads = [threading.Thread(target=work, args=(i,)) for i in range(len(items))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert [got[i] for i in range(len(items))] == pytest.approx(want, rel=1e-6)


def test_local_error_is_the_mean_squared_output_error() -> None:
    loaded = tiny_loaded()
    windows = _windows()
    name = "blk.0.ffn_down.weight"
    with torch.no_grad():
        cache = LayerCache(loaded, windows, FIRST)
        w = loaded.params[name]
        v = _noisy(w, 3)
        err = cache.local_error(name, [v, w.detach().clone()])
        x = cache.linear_inputs[name]
    assert x.shape == (windows.size, w.shape[1])
    assert err is not None
    assert err[0] == pytest.approx(float(((x @ (v - w).T) ** 2).sum()) / x.shape[0], rel=1e-5)
    assert err[1] == 0.0
    assert cache.local_error("token_embd.weight", [v]) is None


def test_first_scored_is_checked() -> None:
    with pytest.raises(ValueError, match="first_scored"):
        LayerCache(tiny_loaded(), _windows(), 12)


def test_torch_threads_restores() -> None:
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("name", ["token_embd.weight", "blk.0.attn_q.weight",
                                  "blk.1.attn_k.weight", "blk.2.ffn_down.weight"])
def test_gemma2_rerun_equals_full_forward(name: str) -> None:
    # Gemma 2: embedding scaled by sqrt(hidden), sliding-window layers (window 4 < 12 tokens, so
    # their masks differ from the global layers'), logits soft-capped at 0.5
    loaded = tiny_loaded(arch="gemma2", tie=True)
    model = loaded.model
    ids = torch.as_tensor(_windows(), dtype=torch.long)
    with torch.no_grad():
        assert model(ids).logits.abs().max() < 0.5  # the cap binds
        cache = LayerCache(loaded, _windows(), FIRST)
        assert cache.embedding_ok and cache.embed_scale is not None
        value = _noisy(loaded.params[name], 1)
        got = cache.kl(name, [value])[0]
    want = _full_kl(loaded, _windows(), name, value)
    assert want > 1e-9
    assert got == pytest.approx(want, rel=1e-4)


def test_a_replay_that_differs_from_the_forward_pass_is_refused() -> None:
    from advisor.errors import BadInput

    loaded = tiny_loaded()
    calls = []

    def first_call_only(module: Any, args: Any, out: Any) -> Any:
        # something the forward pass does that a rerun of the layers would not repeat
        calls.append(1)
        return (out[0] * 1.5, *out[1:]) if isinstance(out, tuple) and len(calls) == 1 else (
            out * 1.5 if len(calls) == 1 else out)

    loaded.model.get_decoder().layers[1].register_forward_hook(first_call_only)
    with torch.no_grad(), pytest.raises(BadInput, match="replay of llama differs"):
        LayerCache(loaded, _windows(), FIRST)
