"""AWQ search: against an independent reference, and better than round-to-nearest on the loss it
minimises. (GPTQ is llm-compressor's now: backends/gptq.py.)"""

from __future__ import annotations

import pytest
import torch

from kernels.affine import IntSpec, fake_quantize
from kernels.awq import awq_clip, awq_search_scales, awq_search_scales_reference, clip_weight


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
