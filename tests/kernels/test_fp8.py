"""FP8 E4M3: the plain-arithmetic rounding against torch's cast bit for bit, weights and dynamic
per-token activations against compressed-tensors' own quantizer, SQNR, and the scaled GEMM
(torch._scaled_mm) against the dequantized reference matmul."""

from __future__ import annotations

import pytest
import torch

from kernels import fp8


def sqnr_db(ref: torch.Tensor, approx: torch.Tensor) -> float:
    return float(10 * torch.log10(ref.pow(2).sum() / (ref - approx).pow(2).sum()))


def _bits(x: torch.Tensor) -> torch.Tensor:
    """float32 bit patterns: tells -0.0 from 0.0 and compares NaNs."""
    return x.float().contiguous().view(torch.int32)


def _torch_cast(x: torch.Tensor) -> torch.Tensor:
    return x.float().to(fp8.E4M3).float()


def _grid() -> torch.Tensor:
    """Every finite E4M3 value (the 256 codes less the two NaNs)."""
    v = torch.arange(256, dtype=torch.int32).to(torch.uint8).view(fp8.E4M3).float()
    return v[~v.isnan()]


def test_reference_is_torch_cast_on_every_float16() -> None:
    """All 63,488 finite float16 values hold every E4M3 midpoint (ties) and subnormal; beyond
    +-448 the reference saturates as clamping before the cast does (compressed-tensors clamps)."""
    x = torch.arange(65536, dtype=torch.int32).to(torch.int16).view(torch.float16).float()
    x = x[x.isfinite()]
    inside = x.abs() <= fp8.E4M3_MAX
    ref = fp8.e4m3_reference(x)
    assert torch.equal(_bits(ref[inside]), _bits(_torch_cast(x[inside])))
    clamped = x[~inside].clamp(-fp8.E4M3_MAX, fp8.E4M3_MAX)
    assert torch.equal(_bits(ref[~inside]), _bits(_torch_cast(clamped)))
    assert ref[~inside].abs().eq(fp8.E4M3_MAX).all()


def test_reference_ties_and_neighbours_of_ties() -> None:
    """The midpoint of two neighbouring E4M3 values rounds to the even one; one float32 ulp
    either side rounds to the nearer."""
    g = _grid()
    pos = g[g > 0].sort().values
    mids = (pos[:-1] + pos[1:]) / 2
    x = torch.cat([mids, mids.nextafter(torch.tensor(0.0)), mids.nextafter(torch.tensor(1e9))])
    x = torch.cat([x, -x, g, torch.tensor([0.0, -0.0, 2.0**-10, 3 * 2.0**-10, 2.0**-12])])
    assert torch.equal(_bits(fp8.e4m3_reference(x)), _bits(_torch_cast(x)))
    # the spot checks the grid implies: 2^-10 is half the smallest subnormal (tie -> 0),
    # 3 * 2^-10 is 1.5 subnormals (tie -> 2 subnormals)
    assert fp8.e4m3_reference(torch.tensor([2.0**-10, 3 * 2.0**-10])).tolist() == [0.0, 2.0**-8]


def test_reference_on_random_float32_across_the_range() -> None:
    g = torch.Generator().manual_seed(0)
    mag = torch.exp2(torch.empty(20000).uniform_(-14, 9, generator=g))
    sign = torch.where(torch.rand(20000, generator=g) < 0.5, -1.0, 1.0)
    x = (sign * mag).float()
    assert torch.equal(_bits(fp8.e4m3_reference(x)), _bits(_torch_cast(x)))
    assert fp8.e4m3_reference(torch.tensor([1e6, -500.0, float("nan")])).tolist()[:2] == \
        [448.0, -448.0]
    assert fp8.e4m3_reference(torch.tensor([float("nan")])).isnan().all()


def _weights(rows: int = 64, cols: int = 256, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, cols, generator=g) * 0.05
    w[3, 7] = 0.9  # an outlier
    w[5] = 0.0  # an all-zero row
    return w


@pytest.mark.parametrize("per_channel", [True, False])
def test_weights_match_compressed_tensors(per_channel: bool) -> None:
    """Same scales as calculate_qparams and the same codes as the `float-quantized` compressor's
    quantize, for llm-compressor's FP8 weight args."""
    from compressed_tensors.quantization import QuantizationArgs
    from compressed_tensors.quantization.lifecycle.forward import quantize
    from compressed_tensors.quantization.utils import calculate_qparams

    w = _weights()
    args = QuantizationArgs(num_bits=8, type="float", symmetric=True,
                            strategy="channel" if per_channel else "tensor")
    lo = w.amin(dim=1, keepdim=True) if per_channel else w.amin().reshape(1)
    hi = w.amax(dim=1, keepdim=True) if per_channel else w.amax().reshape(1)
    ct_scale, _ = calculate_qparams(lo, hi, args)
    q, scale = fp8.quantize_weight(w, fp8.Fp8Spec(per_channel))
    assert scale.dtype == torch.float32
    assert scale.shape == ((64, 1) if per_channel else (1,))
    torch.testing.assert_close(scale, ct_scale.reshape(scale.shape), rtol=0, atol=0)
    ct_q = quantize(w, scale, None, args, dtype=fp8.E4M3)
    assert q.dtype == fp8.E4M3
    assert torch.equal(q.view(torch.uint8), ct_q.view(torch.uint8))
    # the row maxima land exactly on +-448; the zero row stays zero
    deq = fp8.dequantize(q, scale)
    if per_channel:
        assert q.float().abs().amax(dim=1)[torch.arange(64) != 5].eq(448).all()
    assert deq[5].eq(0).all()


def test_dequantize_and_reference_agree() -> None:
    w = _weights(8, 64)
    q, scale = fp8.quantize_weight(w)
    expect = fp8.e4m3_reference(w / scale) * scale
    assert torch.equal(fp8.dequantize(q, scale), expect)


def test_sqnr() -> None:
    """E4M3 keeps 3 mantissa bits: ~31 dB on gaussian weights whatever their scale; per channel
    beats per tensor once small rows fall into the subnormals of a shared scale."""
    w = _weights(64, 512, seed=1)
    w[3, 7] = 0.05
    assert sqnr_db(w, fp8.fake_quantize_weight(w)) > 30.0
    rows = w * torch.logspace(-6, 0, 64).unsqueeze(1)  # row 0 is a million times row 63
    per_ch = fp8.fake_quantize_weight(rows)
    per_t = fp8.fake_quantize_weight(rows, fp8.Fp8Spec(False))
    assert min(sqnr_db(rows[i], per_ch[i]) for i in range(64) if i != 5) > 28.0
    assert sqnr_db(rows[:16], per_t[:16]) < 10.0  # the small rows drown in subnormals


def test_dynamic_tokens_follow_vllm_and_compressed_tensors() -> None:
    """Per-token scales absmax / 448 (vLLM's minimum for a zero token), the same fake-quantized
    values as compressed-tensors' dynamic token forward on ordinary tokens."""
    from compressed_tensors.quantization import QuantizationArgs
    from compressed_tensors.quantization.lifecycle.forward import fake_quantize
    from compressed_tensors.quantization.utils import compute_dynamic_scales_and_zp

    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 16, 64, generator=g)
    x[0, 3, 5] = 40.0  # an outlier token
    q, scale = fp8.quantize_tokens(x)
    assert scale.shape == (2, 16, 1)
    torch.testing.assert_close(scale, x.abs().amax(-1, keepdim=True) / 448, rtol=0, atol=0)
    assert q.float().abs().amax(-1).eq(448).all()
    args = QuantizationArgs(num_bits=8, type="float", symmetric=True, strategy="token",
                            dynamic=True)
    ct_scale, ct_zp = compute_dynamic_scales_and_zp(x, args, torch.nn.Module())
    ct = fake_quantize(x, ct_scale, ct_zp, args)
    assert torch.equal(fp8.fake_quantize_tokens(x), ct)
    zeros = torch.zeros(1, 4, 64)
    q0, s0 = fp8.quantize_tokens(zeros)
    assert q0.float().eq(0).all() and s0.eq(fp8.MIN_TOKEN_SCALE).all()
    assert sqnr_db(x, fp8.fake_quantize_tokens(x)) > 30.0


def _operands(m: int = 32, k: int = 128, n: int = 48) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(m, k, generator=g)
    w = torch.randn(n, k, generator=g) * 0.05
    xq, xs = fp8.quantize_tokens(x)
    wq, ws = fp8.quantize_weight(w)
    return x, w, xq, xs, wq, ws


def test_reference_linear_is_close_to_float() -> None:
    x, w, *_ = _operands()
    wq, ws = fp8.quantize_weight(w)
    bias = torch.randn(48)
    out = fp8.linear(x.unsqueeze(0), wq, ws, bias)
    ref = x @ w.t() + bias
    assert out.shape == (1, 32, 48)
    assert sqnr_db(ref, out[0]) > 25.0


def _scaled_mm_close(device: str) -> None:
    _, _, xq, xs, wq, ws = _operands()
    ref = fp8.scaled_mm_reference(xq, xs, wq, ws)
    got = fp8.scaled_mm(xq.to(device), xs.to(device), wq.to(device), ws.to(device))
    assert got.dtype == torch.bfloat16 and got.shape == ref.shape
    # one bfloat16 rounding of the float32 accumulation
    torch.testing.assert_close(got.float().cpu(), ref, rtol=2**-8, atol=1e-3)


def test_scaled_mm_on_cpu_matches_reference() -> None:
    """torch 2.13 runs _scaled_mm on the CPU too: the same call the GPU path makes."""
    try:
        _scaled_mm_close("cpu")
    except (RuntimeError, NotImplementedError) as e:  # older torch: CUDA only
        pytest.skip(f"torch._scaled_mm has no CPU kernel here: {e}")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available() or
                    torch.cuda.get_device_capability() < (8, 9),
                    reason="FP8 GEMM needs a CUDA GPU with compute capability 8.9+")
def test_scaled_mm_on_gpu_matches_cpu_reference() -> None:
    _scaled_mm_close("cuda")
    # and the whole linear on the GPU path against its CPU reference
    x, w, _, _, wq, ws = _operands()
    got = fp8.linear(x.cuda().bfloat16(), wq.cuda(), ws.cuda(), use_scaled_mm=True)
    ref = fp8.linear(x.bfloat16(), wq, ws)
    torch.testing.assert_close(got.float().cpu(), ref.float(), rtol=2**-7, atol=2e-3)
