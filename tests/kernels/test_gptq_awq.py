"""GPTQ core and AWQ search: against independent references, and better than round-to-nearest on
the loss each one minimises."""

from __future__ import annotations

import pytest
import torch

from kernels.affine import IntSpec, fake_quantize, qparams
from kernels.awq import awq_clip, awq_search_scales, awq_search_scales_reference, clip_weight
from kernels.gptq import gptq_quantize, gptq_quantize_reference, hessian_update


def _layer(seed: int = 0, out_f: int = 48, in_f: int = 128,
           n: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """A weight and correlated inputs with a few loud channels, like LLM activations."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(out_f, in_f, generator=g) * 0.05
    mix = torch.randn(in_f, in_f, generator=g) / in_f ** 0.5
    x = torch.randn(n, in_f, generator=g) @ (torch.eye(in_f) + mix)
    x[:, :4] *= 20.0
    return w, x


def _out_err(w: torch.Tensor, wq: torch.Tensor, x: torch.Tensor) -> float:
    return float(((x @ (w - wq).T) ** 2).mean())


def test_hessian_running_mean_matches_batch() -> None:
    _, x = _layer()
    h, n = hessian_update(None, 0, x[:200])
    h, n = hessian_update(h, n, x[200:])
    assert n == x.shape[0]
    full = 2.0 / x.shape[0] * (x.double().T @ x.double())
    # float32 products per batch, float64 across batches
    torch.testing.assert_close(h, full, rtol=1e-5, atol=1e-5 * float(full.abs().max()))


@pytest.mark.parametrize("group", [32, -1])
def test_gptq_matches_unblocked_reference(group: int) -> None:
    """Blocked, Cholesky-based GPTQ = the paper's Algorithm 1 with explicit inverse updates."""
    spec = IntSpec(4, group)
    w, x = _layer(in_f=64)
    h, _ = hessian_update(None, 0, x)
    fast = gptq_quantize(w, h, spec, block_size=16)
    ref = gptq_quantize_reference(w, h, spec)
    close = (fast.dequantized - ref).abs() <= 1e-4
    assert close.float().mean() > 0.995  # rounding ties may flip a handful of integers


@pytest.mark.parametrize("bits,group", [(4, 128), (4, 32), (8, 128), (4, -1)])
@pytest.mark.parametrize("act_order", [False, True])
def test_gptq_beats_rtn(bits: int, group: int, act_order: bool) -> None:
    spec = IntSpec(bits, group)
    w, x = _layer(in_f=256)
    h, _ = hessian_update(None, 0, x)
    res = gptq_quantize(w, h, spec, act_order=act_order)
    rtn = _out_err(w, fake_quantize(w, spec), x)
    got = _out_err(w, res.dequantized, x)
    assert got < 0.7 * rtn, (got, rtn)
    # the stored integers and scales reproduce the dequantized weights exactly
    from kernels.affine import dequantize

    assert torch.equal(dequantize(res.q, res.scale, res.zero_point), res.dequantized)
    assert torch.equal(res.scale, res.scale.half().float())


def test_gptq_dead_inputs_and_blocks() -> None:
    spec = IntSpec(4, 32)
    w, x = _layer(in_f=128)
    x[:, 10] = 0.0  # a dead input channel: its weights are zeroed, no NaN
    h, _ = hessian_update(None, 0, x)
    a = gptq_quantize(w, h, spec, block_size=128)
    b = gptq_quantize(w, h, spec, block_size=32)
    assert torch.isfinite(a.dequantized).all()
    assert torch.equal(a.dequantized[:, 10], torch.zeros(w.shape[0]))
    # lazy block size changes the arithmetic order only
    assert ((a.dequantized - b.dequantized).abs() > 1e-4).float().mean() < 0.01


def test_gptq_static_groups_use_unquantized_scales() -> None:
    spec = IntSpec(4, 32)
    w, x = _layer(in_f=128)
    h, _ = hessian_update(None, 0, x)
    res = gptq_quantize(w, h, spec, act_order=True)
    s, z = qparams(w, spec)
    assert torch.equal(res.scale, s) and torch.equal(res.zero_point, z)


def test_awq_search_loss_matches_reference_and_beats_rtn() -> None:
    spec = IntSpec(4, 32)
    w, x = _layer(seed=3)
    w2 = torch.randn(32, w.shape[1], generator=torch.Generator().manual_seed(9)) * 0.05
    res = awq_search_scales([w, w2], x, spec, grid=10)
    assert len(res.errors) == 10
    for i in (0, 3, 7):
        ref = awq_search_scales_reference([w, w2], x, spec, i / 10)
        assert res.errors[i] == pytest.approx(ref, rel=1e-4)
    assert res.errors[int(res.ratio * 10)] == min(res.errors)
    assert res.ratio > 0  # loud channels: protecting them pays
    both = torch.cat([w, w2])
    rtn = _out_err(both, fake_quantize(both, spec), x)
    awq = fake_quantize(both * res.scales, spec) / res.scales
    assert _out_err(both, awq, x) < 0.8 * rtn


def test_awq_clip_never_worse_than_no_clip() -> None:
    spec = IntSpec(4, 32)
    w, x = _layer(seed=4)
    m = awq_clip(w, x, spec, grid=10)
    assert m.shape == (w.shape[0], w.shape[1] // 32)
    org = w.abs().reshape(w.shape[0], -1, 32).amax(-1)
    assert (m <= org).all() and (m >= 0.5 * org - 1e-7).all()
    clipped = fake_quantize(clip_weight(w, m), spec)
    assert _out_err(w, clipped, x) <= _out_err(w, fake_quantize(w, spec), x) * (1 + 1e-6)
