"""SmoothQuant factors and folding (function-preserving in float), int8 weights and dynamic
per-token int8 activations against compressed-tensors / vLLM's rules, and the point of it all:
smoothing cuts the W8A8 output error on inputs with outlier channels."""

from __future__ import annotations

import pytest
import torch

from kernels import smoothquant as sq


def _layer(seed: int = 0, hidden: int = 64, outs: tuple[int, ...] = (64, 32, 32)
           ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Activations [tokens, hidden] with four outlier channels (LLM-like: a few channels 50x
    the rest on every token) and the weights of the linears that read them."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(256, hidden, generator=g)
    x[:, [3, 17, 40, 41]] *= 50.0
    ws = [torch.randn(o, hidden, generator=g) * 0.05 for o in outs]
    return x, ws


def test_scales_formula_and_clamps() -> None:
    lo, hi = torch.tensor([-1.0, -1.0, 0.0, -4.0]), torch.tensor([3.0, 0.0, 0.0, 5.0])
    w1 = torch.tensor([[1.0, -2.0, 0.5, 0.0], [0.25, 1.0, -1.0, 0.0]])
    w2 = torch.tensor([[-3.0, 0.5, 0.5, 0.0]])
    # absmax (the paper's): max|X_j| [3, 1, 0 -> 1e-5, 5]; max|W_j| [3, 2, 1, 0 -> 1e-5]
    expect = torch.tensor([3.0**0.5 / 3.0**0.5, 1.0 / 2.0**0.5, 1e-5**0.5 / 1.0,
                           5.0**0.5 / 1e-5**0.5])
    torch.testing.assert_close(sq.smoothing_scales(lo, hi, [w1, w2], 0.5), expect)
    # range (llm-compressor's): range [4, 1, 0, 9]; 2 max|W_j| [6, 4, 2, 0]; range 0 -> s 0 ->
    # 1e-5; weights all zero -> s = the range
    expect = torch.tensor([4.0**0.5 / 6.0**0.5, 1.0 / 4.0**0.5, 1e-5, 9.0])
    torch.testing.assert_close(sq.smoothing_scales(lo, hi, [w1, w2], 0.5, "range"), expect)
    # alpha 1: s = the activations' statistic (all into the weights)
    torch.testing.assert_close(sq.smoothing_scales(lo, hi, [w1, w2], 1.0),
                               torch.tensor([3.0, 1.0, 1e-5, 5.0]))
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="alpha"):
            sq.smoothing_scales(lo, hi, [w1], bad)
    with pytest.raises(ValueError, match="statistic"):
        sq.smoothing_scales(lo, hi, [w1], 0.5, "mean")
    with pytest.raises(ValueError, match="do not match"):
        sq.smoothing_scales(lo, hi, [torch.zeros(2, 3)])


def test_activation_range_is_per_channel_over_every_token() -> None:
    x = torch.tensor([[[1.0, -2.0], [3.0, 0.5]], [[-1.0, 4.0], [0.0, 0.0]]])  # [2, 2, hidden 2]
    lo, hi = sq.activation_range(x)
    torch.testing.assert_close(lo, torch.tensor([-1.0, -2.0]))
    torch.testing.assert_close(hi, torch.tensor([3.0, 4.0]))


@pytest.mark.parametrize("statistic", sq.STATISTICS)
def test_smoothing_equalises_channel_ranges(statistic: str) -> None:
    """With alpha 0.5 each channel's smoothed activation statistic equals its smoothed weight
    max (absmax), or twice it (range: llm-compressor balances the range against 2 max|W|)."""
    x, ws = _layer()
    s = sq.smoothing_scales(*sq.activation_range(x), ws, statistic=statistic)
    lo, hi = sq.activation_range(x / s)
    x_stat = torch.maximum(lo.abs(), hi.abs()) if statistic == "absmax" else 0.5 * (hi - lo)
    w_max = torch.cat([w * s for w in ws]).abs().amax(0)
    torch.testing.assert_close(x_stat, w_max, rtol=1e-5, atol=0)


@pytest.mark.parametrize("with_bias", [False, True])
def test_folding_preserves_the_function(with_bias: bool) -> None:
    """norm -> linears before and after folding: the same outputs (float64: to 1e-12; float32
    round-off only)."""
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    x, ws = _layer(1)
    h = x * 3.0 + 1.0  # the norm's input
    norm = LlamaRMSNorm(64, eps=1e-6).double()
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        norm.weight.copy_(torch.rand(64, generator=g, dtype=torch.float64) + 0.5)
    bias = torch.randn(64, generator=g, dtype=torch.float64) if with_bias else None

    def run(weight: torch.Tensor, b: torch.Tensor | None,
            lins: list[torch.Tensor]) -> list[torch.Tensor]:
        with torch.no_grad():
            norm.weight.copy_(weight)
            y = norm(h.double()) + (b if b is not None else 0.0)
        return [y @ w.double().t() for w in lins]

    before = run(norm.weight.detach().clone(), bias, ws)
    s = sq.smoothing_scales(*sq.activation_range(x), ws)
    w, b, folded = sq.fold_smoothing(norm.weight.detach(), bias, ws, s.double())
    assert (b is None) is (bias is None)
    after = run(w.double(), None if b is None else b.double(), folded)
    for a, r in zip(after, before):
        torch.testing.assert_close(a, r, rtol=1e-6, atol=1e-6)
    assert not torch.allclose(folded[0], ws[0].float())  # the weights really moved


def test_int8_weights_match_compressed_tensors() -> None:
    """The int-quantized compressor's codes for compressed-tensors' INT8_W8A8 weight args."""
    from compressed_tensors.quantization import QuantizationArgs
    from compressed_tensors.quantization.lifecycle.forward import quantize

    _, ws = _layer()
    w = ws[0]
    q, scale = sq.quantize_weight(w)
    assert q.dtype == torch.int8 and scale.shape == (64, 1)
    torch.testing.assert_close(scale, w.abs().amax(1, keepdim=True).div(127.5).half().float())
    args = QuantizationArgs(num_bits=8, type="int", symmetric=True, strategy="channel")
    assert torch.equal(quantize(w, scale, None, args, dtype=torch.int8), q)


def test_tokens_follow_vllm_and_compressed_tensors() -> None:
    from compressed_tensors.quantization import QuantizationArgs
    from compressed_tensors.quantization.lifecycle.forward import fake_quantize
    from compressed_tensors.quantization.utils import compute_dynamic_scales_and_zp

    x, _ = _layer(2)
    x = x.reshape(4, 64, 64)
    q, scale = sq.quantize_tokens(x)
    assert q.dtype == torch.int8 and scale.shape == (4, 64, 1)
    # vLLM: every token's max maps to +-127 exactly
    assert q.float().abs().amax(-1).eq(127).all()
    torch.testing.assert_close(scale, x.abs().amax(-1, keepdim=True) / 127, rtol=0, atol=0)
    # ties to even: 0.5 and 1.5 steps
    q2, _ = sq.quantize_tokens(torch.tensor([[127.0, 0.5, 1.5, -2.5]]))
    assert q2.tolist() == [[127, 0, 2, -2]]
    # compressed-tensors' forward (absmax / 127.5) is qmax=CT_TOKEN_QMAX, to the bit
    args = QuantizationArgs(num_bits=8, type="int", symmetric=True, strategy="token",
                            dynamic=True)
    ct_scale, ct_zp = compute_dynamic_scales_and_zp(x, args, torch.nn.Module())
    assert torch.equal(sq.fake_quantize_tokens(x, sq.CT_TOKEN_QMAX),
                       fake_quantize(x, ct_scale, ct_zp, args))
    # a zero token stays zero
    assert sq.fake_quantize_tokens(torch.zeros(2, 8)).eq(0).all()


def test_int8_linear_is_the_fake_quantized_matmul() -> None:
    x, ws = _layer(3)
    wq, w_scale = sq.quantize_weight(ws[0])
    bias = torch.randn(64)
    out = sq.int8_linear_reference(x.reshape(2, 128, 64), wq, w_scale, bias)
    fake = sq.fake_quantize_tokens(x) @ sq.fake_quantize_weight(ws[0]).t() + bias
    torch.testing.assert_close(out.reshape(256, 64), fake, rtol=1e-5, atol=1e-4)


def _w8a8_error(x: torch.Tensor, ws: list[torch.Tensor], s: torch.Tensor | None) -> float:
    """Relative output error of W8A8-INT8 linears (vLLM rules), smoothed by `s` or not."""
    err = ref = 0.0
    for w in ws:
        xs, wsm = (x, w) if s is None else (x / s, w * s)
        wq, w_scale = sq.quantize_weight(wsm)
        out = sq.int8_linear_reference(xs, wq, w_scale)
        exact = x @ w.t()
        err += float((out - exact).pow(2).sum())
        ref += float(exact.pow(2).sum())
    return err / ref


def test_smoothing_cuts_w8a8_error_on_outlier_channels() -> None:
    x, ws = _layer(4)
    s = sq.smoothing_scales(*sq.activation_range(x), ws)
    plain = _w8a8_error(x, ws, None)
    smooth = _w8a8_error(x, ws, s)
    assert smooth < plain / 4, (plain, smooth)
    # without outliers there is little to win, and smoothing does not hurt much either
    g = torch.Generator().manual_seed(6)
    calm = torch.randn(256, 64, generator=g)
    s_calm = sq.smoothing_scales(*sq.activation_range(calm), ws)
    assert _w8a8_error(calm, ws, s_calm) < 2 * _w8a8_error(calm, ws, None)
