"""Group-wise affine integers: exact against a plain-loop reference and against compressed-tensors'
own quantize/pack, SQNR by bits, packing round trips."""

from __future__ import annotations

import pytest
import torch

from kernels.affine import (
    IntSpec,
    dequantize,
    fake_quantize,
    fake_quantize_reference,
    pack_int32,
    qparams,
    quantize,
    unpack_int32,
)


def sqnr_db(ref: torch.Tensor, approx: torch.Tensor) -> float:
    return float(10 * torch.log10(ref.pow(2).sum() / (ref - approx).pow(2).sum()))


def _weights(rows: int = 16, cols: int = 256, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, cols, generator=g) * 0.05
    w[3, 7] = 0.9  # an outlier
    w[5, :64] = 0.0  # an all-zero group
    return w


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("group", [32, 64, 128, -1])
@pytest.mark.parametrize("symmetric", [True, False])
def test_matches_plain_loop_reference(bits: int, group: int, symmetric: bool) -> None:
    spec = IntSpec(bits, group, symmetric)
    w = _weights(6, 128)
    torch.testing.assert_close(fake_quantize(w, spec), fake_quantize_reference(w, spec),
                               rtol=0, atol=0)


@pytest.mark.parametrize("bits,floor_db", [(4, 17.0), (8, 40.0)])
@pytest.mark.parametrize("group", [32, 128, -1])
def test_sqnr(bits: int, floor_db: float, group: int) -> None:
    w = _weights(64, 512, seed=1)
    w[3, 7] = 0.05  # gaussian only: the bound is the textbook one
    for sym in (True, False):
        got = sqnr_db(w, fake_quantize(w, IntSpec(bits, group, sym)))
        assert got > floor_db, (bits, group, sym, got)
    # smaller groups never hurt on gaussian rows
    if group == 32:
        assert sqnr_db(w, fake_quantize(w, IntSpec(bits, 32))) > \
            sqnr_db(w, fake_quantize(w, IntSpec(bits, -1)))


def test_integers_and_zero_points_in_range() -> None:
    w = _weights()
    for sym in (True, False):
        spec = IntSpec(4, 64, sym)
        s, z = qparams(w, spec)
        q = quantize(w, s, z, spec)
        assert q.dtype == torch.int8 and int(q.min()) >= -8 and int(q.max()) <= 7
        assert int(z.min()) >= -8 and int(z.max()) <= 7
        assert (s > 0).all()
        # scales are exactly representable in the checkpoint's fp16
        assert torch.equal(s, s.half().float())
        # the all-zero group dequantizes to zeros
        assert torch.equal(dequantize(q, s, z)[5, :64], torch.zeros(64))


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_pack_round_trip(bits: int) -> None:
    g = torch.Generator().manual_seed(bits)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    for cols in (32, 64, 100, 576):
        q = torch.randint(lo, hi + 1, (5, cols), generator=g, dtype=torch.int8)
        packed = pack_int32(q, bits)
        assert packed.dtype == torch.int32
        assert packed.shape == (5, -(-cols * bits // 32))
        assert torch.equal(unpack_int32(packed, bits, cols), q)


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("symmetric", [True, False])
def test_same_integers_and_bytes_as_compressed_tensors(bits: int, symmetric: bool) -> None:
    """Our integers are the ones compressed-tensors computes from our (scale, zp), and our
    packing is its `pack_to_int32` bit for bit."""
    ct_pack = pytest.importorskip("compressed_tensors.compressors.pack_quantized.helpers")
    from compressed_tensors.quantization import QuantizationArgs
    from compressed_tensors.quantization.lifecycle.forward import quantize as ct_quantize

    spec = IntSpec(bits, 64, symmetric)
    w = _weights(8, 256).half().float()
    s, z = qparams(w, spec)
    q = quantize(w, s, z, spec)
    args = QuantizationArgs(num_bits=bits, type="int", symmetric=symmetric, strategy="group",
                            group_size=64)
    theirs = ct_quantize(x=fake_quantize(w, spec), scale=s.half(), zero_point=z, args=args,
                         dtype=torch.int8)
    assert torch.equal(theirs, q)
    assert torch.equal(ct_pack.pack_to_int32(q, bits), pack_int32(q, bits))


def test_group_must_divide_row() -> None:
    with pytest.raises(ValueError, match="does not divide"):
        qparams(torch.zeros(4, 96), IntSpec(4, 64))
    with pytest.raises(ValueError, match="bits"):
        IntSpec(5, 64)
