"""NF4 with double-quantized scales: bit-exact against bitsandbytes' own quantize_4bit /
dequantize_4bit on this CPU (codes, absmax, nested state, dequantized values), against a
plain-loop reference, SQNR on gaussian weights, all-zero blocks and partial blocks."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from kernels.affine import IntSpec, fake_quantize
from kernels.nf4 import (
    ZERO_CODE,
    Nf4Weight,
    block_absmax,
    dequantize_nf4,
    dynamic_code,
    fake_quantize_nf4,
    nf4_code,
    nf4_codes,
    nf4_codes_reference,
    pack_nibbles,
    quantize_blockwise,
    quantize_nf4,
    unpack_nibbles,
)

bnb_f = pytest.importorskip("bitsandbytes.functional", reason="bitsandbytes not installed")
State = Any  # bitsandbytes.functional.QuantState: imported only where bitsandbytes is


def sqnr_db(ref: torch.Tensor, approx: torch.Tensor) -> float:
    return float(10 * torch.log10(ref.pow(2).sum() / (ref - approx).pow(2).sum()))


def _weights(rows: int, cols: int, seed: int = 0, dtype: torch.dtype = torch.float16
             ) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # log-normal spread of magnitudes: block absmax values far apart, so the nested 8-bit code
    # is exercised over its whole range
    w = torch.randn(rows, cols, generator=g) * 0.02 * torch.exp(
        torch.randn(rows, 1, generator=g))
    if rows > 3:
        w[3] = 0.0  # whole all-zero blocks
    return w.to(dtype)


def _bnb(w: torch.Tensor) -> tuple[torch.Tensor, State]:
    return bnb_f.quantize_4bit(w, blocksize=64, compress_statistics=True, quant_type="nf4")


def _assert_same_state(mine: Nf4Weight, packed: torch.Tensor, state: State) -> None:
    eq = torch.testing.assert_close
    eq(mine.packed, packed, rtol=0, atol=0)
    eq(mine.absmax, state.absmax, rtol=0, atol=0)  # uint8 codes of the block scales
    assert mine.nested is not None and state.state2 is not None
    eq(mine.nested.absmax, state.state2.absmax, rtol=0, atol=0)
    eq(mine.nested.offset, state.offset, rtol=0, atol=0)
    eq(mine.nested.code, state.state2.code, rtol=0, atol=0)
    eq(nf4_code(), state.code, rtol=0, atol=0)
    assert mine.shape == tuple(state.shape) and mine.dtype == state.dtype
    assert mine.blocksize == state.blocksize == 64 and state.state2.blocksize == 256


def test_levels_are_bitsandbytes() -> None:
    torch.testing.assert_close(nf4_code(), bnb_f.get_4bit_type("nf4", device="cpu"),
                               rtol=0, atol=0)
    torch.testing.assert_close(dynamic_code(), bnb_f.create_dynamic_map(), rtol=0, atol=0)


# (300, 256): 1,200 blocks, 5 nested blocks; (96, 576): a real hidden size, 864 blocks, the last
# nested block of 96 (the AVX2 kernel's 8-wide loop ends exactly); (37, 70): a partial last
# 64-block and blocks spanning rows; (25, 330): the last nested block not a multiple of 8.
@pytest.mark.parametrize("shape", [(300, 256), (96, 576), (37, 70), (25, 330)])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_bit_exact_against_bitsandbytes(shape: tuple[int, int], dtype: torch.dtype) -> None:
    w = _weights(*shape, dtype=dtype)
    packed, state = _bnb(w)
    mine = quantize_nf4(w)
    _assert_same_state(mine, packed, state)
    # dequantized in the dtype quantized from, and in float32 (the CPU runner's compute dtype)
    torch.testing.assert_close(dequantize_nf4(mine), bnb_f.dequantize_4bit(packed, state),
                               rtol=0, atol=0)
    torch.testing.assert_close(dequantize_nf4(mine, torch.float32),
                               _bnb_dequant_f32(packed, state), rtol=0, atol=0)


def _bnb_dequant_f32(packed: torch.Tensor, state: State) -> torch.Tensor:
    """bitsandbytes' float32 dequantization: what `Linear4bit` multiplies with when the input is
    float32 (gemm_4bit dequantizes to the input's dtype)."""
    import copy

    s = copy.copy(state)
    s.dtype = torch.float32
    out: torch.Tensor = bnb_f.dequantize_4bit(packed, s)
    return out


def test_odd_count_pads_one_zero_code() -> None:
    w = _weights(7, 9, seed=3)  # 63 values: one partial block, an odd count
    packed, state = _bnb(w)
    mine = quantize_nf4(w)
    _assert_same_state(mine, packed, state)
    assert mine.packed.shape == (32, 1) and int(mine.packed[-1, 0]) & 0xF == ZERO_CODE
    codes, _ = nf4_codes(w)
    torch.testing.assert_close(unpack_nibbles(mine.packed, 63), codes, rtol=0, atol=0)


def test_all_zero_blocks_and_all_zero_tensor() -> None:
    w = _weights(8, 128, seed=4)
    mine = quantize_nf4(w)
    absmax = block_absmax(mine)
    # row 3 is zero: blocks 6 and 7; their codes are the 0.0 level and they dequantize to ~0
    # (absmax is rebuilt as code8 * nested + mean: 0 only up to the 8-bit code's resolution)
    codes = unpack_nibbles(mine.packed, w.numel()).view(8, 128)
    assert bool((codes[3] == ZERO_CODE).all())
    assert float(dequantize_nf4(mine, torch.float32)[3].abs().max()) == 0.0
    assert float(absmax[6:8].abs().max()) < 1e-2 * float(absmax.max())
    # a tensor of zeros: every scale 0, nested block absmax 0 (libbitsandbytes writes codes 0)
    z = torch.zeros(4, 64, dtype=torch.float16)
    packed, state = _bnb(z)
    mz = quantize_nf4(z)
    _assert_same_state(mz, packed, state)
    assert bool((mz.absmax == 0).all()) and float(dequantize_nf4(mz).abs().max()) == 0.0
    # an all-zero partial last block (80 values: 64 + 16 zeros)
    p = _weights(2, 40, seed=8)
    p[1] = 0.0
    packed, state = _bnb(p)
    mp = quantize_nf4(p)
    _assert_same_state(mp, packed, state)
    torch.testing.assert_close(dequantize_nf4(mp), bnb_f.dequantize_4bit(packed, state),
                               rtol=0, atol=0)
    assert float(dequantize_nf4(mp)[1, 24:].abs().max()) == 0.0
    _, plain = bnb_f.quantize_4bit(p, blocksize=64, compress_statistics=False, quant_type="nf4")
    torch.testing.assert_close(quantize_nf4(p, double_quant=False).absmax, plain.absmax,
                               rtol=0, atol=0)  # the float32 scales: 1e-38 for the zero block


def test_codes_match_plain_loop_reference() -> None:
    w = _weights(6, 75, seed=5, dtype=torch.float32)  # 450 values: 7 full blocks and 2 left
    codes, absmax = nf4_codes(w)
    ref_codes, ref_absmax = nf4_codes_reference(w)
    torch.testing.assert_close(codes, ref_codes, rtol=0, atol=0)
    torch.testing.assert_close(absmax, ref_absmax, rtol=0, atol=0)


def test_pack_round_trip_nibble_order() -> None:
    codes = torch.tensor([1, 2, 15, 0, 7], dtype=torch.uint8)
    packed = pack_nibbles(codes)
    assert packed.view(-1).tolist() == [0x12, 0xF0, 0x77]  # first element in the high nibble
    torch.testing.assert_close(unpack_nibbles(packed, 5), codes, rtol=0, atol=0)


def test_nested_code_is_nearest_but_for_one_lookup_bin() -> None:
    """libbitsandbytes' CPU blockwise quantizer looks the code up in 65,536 bins of [-1, 1]: it
    may miss the exact nearest code only by the width of one bin."""
    g = torch.Generator().manual_seed(6)
    x = torch.randn(4096, generator=g) * torch.exp(torch.randn(4096, generator=g) * 3)
    code = dynamic_code()
    q, absmax = quantize_blockwise(x, code, 256)
    v = x / absmax.repeat_interleave(256)
    got = (code[q.long()] - v).abs()
    best = (code[None, :] - v[:, None]).abs().min(dim=1)[0]
    assert float((got - best).max()) <= 2 / 65535


def test_sqnr_on_gaussian_weights() -> None:
    g = torch.Generator().manual_seed(7)
    w = torch.randn(256, 1024, generator=g) * 0.02
    nf4 = sqnr_db(w, fake_quantize_nf4(w))
    assert nf4 > 20.0, nf4
    # double quantization of the scales costs almost nothing
    assert abs(nf4 - sqnr_db(w, fake_quantize_nf4(w, double_quant=False))) < 0.05
    # the normal-quantile levels beat evenly spaced symmetric int4 at the same block size
    assert nf4 > sqnr_db(w, fake_quantize(w, IntSpec(4, 64))) + 0.5


def test_rejects_non_float_and_empty() -> None:
    with pytest.raises(ValueError, match="float tensor"):
        quantize_nf4(torch.ones(4, 4, dtype=torch.int8))
    with pytest.raises(ValueError, match="empty"):
        quantize_nf4(torch.empty(0, 4))
