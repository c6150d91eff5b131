"""GGML type table, byte counts and llama.cpp's shape fallback."""

from __future__ import annotations

import pytest

from advisor import formats
from advisor.errors import BadInput
from advisor.formats import ggml

# sizeof(block_*) and QK* of ggml/src/ggml-common.h in the llama.cpp vendored by
# llama-cpp-python 0.3.36, printed by a C program that includes the header.
GGML_COMMON = {
    "Q1_0": (128, 18), "Q2_0": (64, 18), "Q4_0": (32, 18), "Q4_1": (32, 20),
    "MXFP4": (32, 17), "NVFP4": (64, 36), "Q5_0": (32, 22), "Q5_1": (32, 24),
    "Q8_0": (32, 34), "Q8_1": (32, 36), "TQ1_0": (256, 54), "TQ2_0": (256, 66),
    "Q2_K": (256, 84), "Q3_K": (256, 110), "Q4_K": (256, 144), "Q5_K": (256, 176),
    "Q6_K": (256, 210), "Q8_K": (256, 292), "IQ2_XXS": (256, 66), "IQ2_XS": (256, 74),
    "IQ2_S": (256, 82), "IQ3_XXS": (256, 98), "IQ3_S": (256, 110), "IQ1_S": (256, 50),
    "IQ1_M": (256, 56), "IQ4_NL": (32, 18), "IQ4_XS": (256, 136),
    "F32": (1, 4), "F16": (1, 2), "BF16": (1, 2), "F64": (1, 8),
    "I8": (1, 1), "I16": (1, 2), "I32": (1, 4), "I64": (1, 8),
}


@pytest.mark.parametrize("name", sorted(GGML_COMMON))
def test_table_matches_ggml_common_h(name: str) -> None:
    t = formats.ggml_type(name)
    assert (t.block_size, t.type_size) == GGML_COMMON[name]


def test_table_covers_every_gguf_type() -> None:
    from gguf.constants import GGMLQuantizationType

    assert {t.name for t in GGMLQuantizationType} <= set(formats.ggml_type_names())
    for t in GGMLQuantizationType:
        assert formats.ggml_type(t.name).type_id == int(t.value)


@pytest.mark.parametrize(
    ("name", "bpw"),
    [("Q4_0", 4.5), ("Q4_K", 4.5), ("Q5_K", 5.5), ("Q6_K", 6.5625), ("Q8_0", 8.5),
     ("Q2_K", 2.625), ("Q3_K", 3.4375), ("IQ4_XS", 4.25), ("IQ2_XXS", 2.0625), ("F16", 16.0)],
)
def test_bits_per_weight(name: str, bpw: float) -> None:
    assert formats.ggml_type(name).bits_per_weight == bpw


@pytest.mark.parametrize(
    ("name", "shape", "nbytes"),
    [
        ("Q4_0", (576, 576), 576 * (576 // 32) * 18),  # 186,624
        ("Q4_K", (1536, 1536), 1536 * 6 * 144),  # 1,327,104
        ("Q6_K", (576, 1536), 576 * 6 * 210),
        ("Q8_0", (49152, 576), 49152 * 18 * 34),  # SmolLM2's token_embd: 30,081,024
        ("F32", (576,), 2304),
        ("F16", (3, 5), 30),
        ("Q4_K", (8, 64, 512), 8 * 64 * 2 * 144),  # stacked experts: rows = 8 * 64
    ],
)
def test_tensor_bytes(name: str, shape: tuple[int, ...], nbytes: int) -> None:
    assert formats.tensor_bytes(name, shape) == nbytes
    assert ggml.tensor_bytes(name.lower(), shape) == nbytes


def test_tensor_bytes_rejects_a_row_that_does_not_split() -> None:
    with pytest.raises(BadInput, match="576 weights"):
        formats.tensor_bytes("Q4_K", (576, 576))
    assert not formats.fits("Q4_K", 576)
    assert formats.fits("Q4_K", 1536)


def test_padding() -> None:
    assert formats.padded(0) == 0
    assert formats.padded(1) == 32
    assert formats.padded(2304) == 2304
    assert formats.padded(30, alignment=64) == 64


@pytest.mark.parametrize(
    ("name", "row", "expected"),
    [
        ("Q4_K", 576, "Q5_0"),
        ("Q5_K", 576, "Q5_1"),
        ("Q6_K", 576, "Q8_0"),
        ("Q2_K", 576, "Q4_0"),
        ("Q3_K", 576, "Q4_0"),
        ("TQ2_0", 576, "Q4_0"),
        ("IQ2_XXS", 576, "IQ4_NL"),
        ("IQ3_S", 576, "IQ4_NL"),
        ("IQ4_XS", 576, "IQ4_NL"),
        ("Q4_K", 1536, "Q4_K"),  # fits: unchanged
        ("Q4_K", 100, "F16"),  # 100 is not a multiple of 32 either
        ("Q4_0", 100, "F16"),  # already a 32-block type
        ("Q8_0", 48, "F16"),
        ("F16", 7, "F16"),
        ("BF16", 7, "BF16"),
    ],
)
def test_fallback(name: str, row: int, expected: str) -> None:
    assert formats.fallback(name, row) == expected


@pytest.mark.parametrize("name", ["Q1_0", "NVFP4"])
def test_no_fallback_defined(name: str) -> None:
    # llama.cpp throws "no tensor type fallback is defined for type ..."
    with pytest.raises(BadInput, match="no fallback"):
        formats.fallback(name, 32)


def test_imatrix_flags() -> None:
    for name in ("Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS", "IQ2_XXS", "Q4_0"):
        assert formats.ggml_type(name).uses_imatrix, name
    for name in ("Q8_0", "F16", "TQ1_0", "MXFP4"):
        assert not formats.ggml_type(name).uses_imatrix, name
    required = {n for n in formats.ggml_type_names() if formats.ggml_type(n).requires_imatrix}
    assert required == {"IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS"}


def test_unknown_type_lists_known_ones() -> None:
    with pytest.raises(BadInput) as err:
        formats.ggml_type("Q9_K")
    assert "Q4_K" in err.value.one_line() and "Q9_K" in err.value.one_line()
    assert formats.is_ggml_type("q4_k") and not formats.is_ggml_type("Q4_K_M")
