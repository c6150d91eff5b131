"""HF/GPU format byte formulas against hand-computed values, and the tensor_bytes dispatcher."""

from __future__ import annotations

import pytest

from advisor import formats
from advisor.errors import BadInput

DOWN = (576, 1536)  # SmolLM2 ffn_down: out 576, in 1536


def test_w4a16_group128_symmetric() -> None:
    packed = 576 * (1536 // 8) * 4  # int32 words of 8 nibbles
    scales = 576 * (1536 // 128) * 2  # fp16 per group
    assert formats.tensor_bytes("W4A16", DOWN, group_size=128) == packed + scales + 16 == 456_208


def test_w4a16_group128_asymmetric_adds_packed_zero_points() -> None:
    zp = (576 // 8) * (1536 // 128) * 4  # int32, packed along the output dim
    assert formats.tensor_bytes("W4A16", DOWN, group_size=128, symmetric=False) == 456_208 + zp
    assert zp == 3456


def test_w4a16_per_channel() -> None:
    assert formats.tensor_bytes("W4A16", DOWN, group_size=-1) == 442_368 + 576 * 2 + 16


def test_w8a16_group32() -> None:
    shape = (192, 576)
    packed = 192 * (576 // 4) * 4
    scales = 192 * (576 // 32) * 2
    assert formats.tensor_bytes("W8A16", shape, group_size=32) == packed + scales + 16 == 117_520
    zp = (192 // 4) * (576 // 32) * 4
    assert formats.tensor_bytes("W8A16", shape, group_size=32, symmetric=False) == 117_520 + zp


def test_w4a16_ragged_row_is_padded_and_takes_one_scale_a_row() -> None:
    # 100 columns: ceil(100/8) = 13 words a row; no group of 128/64/32 divides 100: per channel
    assert formats.tensor_bytes("W4A16", (10, 100), group_size=128) == 10 * 13 * 4 + 10 * 2 + 16


def test_a_row_takes_the_largest_group_that_divides_it() -> None:
    from advisor.formats.schemes import group_for

    assert [group_for(576, g) for g in (128, 64, 32, -1)] == [64, 64, 32, -1]
    assert group_for(1536, 128) == 128 and group_for(96, 128) == 32 and group_for(100, 64) == -1
    # SmolLM2's q projection (576 in) at the default 128: 9 groups of 64 a row, not 5 of 128
    assert formats.tensor_bytes("W4A16", (576, 576), group_size=128) == \
        formats.tensor_bytes("W4A16", (576, 576), group_size=64) == 576 * 72 * 4 + 576 * 9 * 2 + 16


def test_w4a16_group_sizes_order_by_bytes() -> None:
    sizes = [formats.tensor_bytes("W4A16", DOWN, group_size=g) for g in (32, 64, 128, -1)]
    assert sizes == sorted(sizes, reverse=True)


def test_w8a8_int8_and_fp8() -> None:
    sq = (576, 576)
    assert formats.tensor_bytes("W8A8-INT8", sq) == 331_776 + 576 * 2
    assert formats.tensor_bytes("W8A8-FP8", sq) == 331_776 + 576 * 4
    assert formats.tensor_bytes("W8A8-FP8", sq, fp8_per_tensor=True) == 331_776 + 4
    # group_size is a W4A16/W8A16 option; other schemes ignore it
    assert formats.tensor_bytes("W8A8-FP8", sq, group_size=32) == 331_776 + 576 * 4


def test_nf4_double_quant() -> None:
    numel = 576 * 1536
    blocks = numel // 64  # 13,824 absmax
    expected = numel // 2 + blocks + (blocks + 255) // 256 * 4 + 256 * 4 + 16 * 4
    assert formats.tensor_bytes("NF4", DOWN) == expected == 457_496


def test_nf4_without_double_quant() -> None:
    assert formats.tensor_bytes("NF4", DOWN, double_quant=False) == 442_368 + 13_824 * 4 + 64


def test_floats() -> None:
    assert formats.tensor_bytes("F16", DOWN) == 1_769_472
    assert formats.tensor_bytes("bf16", DOWN) == 1_769_472
    assert formats.tensor_bytes("F32", (576,)) == 2304
    assert formats.hf_tensor_bytes("F32", (576,)) == 2304


def test_experts_are_separate_matrices() -> None:
    one = formats.tensor_bytes("W4A16", DOWN, symmetric=False)
    assert formats.tensor_bytes("W4A16", (8, *DOWN), symmetric=False) == 8 * one


def test_quantized_schemes_reject_vectors() -> None:
    with pytest.raises(BadInput, match="weight matrices"):
        formats.tensor_bytes("W4A16", (576,))


def test_bad_group_size() -> None:
    with pytest.raises(BadInput, match="group size 0"):
        formats.tensor_bytes("W4A16", DOWN, group_size=0)


def test_dispatch() -> None:
    # a GGML type ignores HF options (the estimator passes a plan's group size to every tensor)
    assert formats.tensor_bytes("Q4_K", (1536, 1536), group_size=64) == 1536 * 6 * 144
    assert formats.tensor_bytes("w4a16", DOWN) == 456_208
    with pytest.raises(BadInput, match="unknown tensor format"):
        formats.tensor_bytes("INT3", DOWN)
    with pytest.raises(TypeError, match="grp"):
        formats.tensor_bytes("W4A16", DOWN, grp=64)
    assert formats.is_hf_scheme("nf4") and not formats.is_hf_scheme("Q4_K")
