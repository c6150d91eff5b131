from __future__ import annotations

import numpy as np
import pytest
from gguf import GGMLQuantizationType as T

from kernels.ggml_quant import (
    _reference_q4_0,
    _reference_q8_0,
    dequantize,
    quant_dequant,
    quantize,
    row_size,
)


def _x(rows: int = 8, n: int = 512, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((rows, n)).astype(np.float32)


def test_reference_q8_0_is_bit_exact_with_libggml() -> None:
    x = _x()
    assert np.array_equal(quant_dequant(x, T.Q8_0), _reference_q8_0(x))


def test_reference_q4_0_is_bit_exact_with_libggml() -> None:
    x = _x(seed=1)
    assert np.array_equal(quant_dequant(x, T.Q4_0), _reference_q4_0(x))


@pytest.mark.parametrize("t,bytes_per_256", [(T.Q4_K, 144), (T.Q6_K, 210), (T.Q8_0, 272),
                                             (T.Q2_K, 84), (T.F16, 512)])
def test_row_sizes(t: T, bytes_per_256: int) -> None:
    assert row_size(t, 256) == bytes_per_256
    assert quantize(_x(2, 256), t).nbytes == 2 * bytes_per_256


def test_more_bits_less_error_and_imatrix_weights_the_error() -> None:
    x = _x(16, 1024, seed=2)
    errs = {t: float(np.mean((quant_dequant(x, t) - x) ** 2))
            for t in (T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K, T.Q8_0)}
    ordered = list(errs.values())
    assert ordered == sorted(ordered, reverse=True), errs
    # with importance on the first columns, their error drops relative to the unweighted quant
    w = np.ones(1024, dtype=np.float32)
    w[:64] = 1000.0
    plain = quant_dequant(x, T.Q3_K)
    weighted = quant_dequant(x, T.Q3_K, imatrix=w)
    err = lambda y: float(np.mean((y[:, :64] - x[:, :64]) ** 2))  # noqa: E731
    assert err(weighted) < err(plain)


def test_requires_imatrix_and_bad_shapes() -> None:
    with pytest.raises(ValueError, match="importance"):
        quantize(_x(1, 256), T.IQ2_XXS)
    with pytest.raises(ValueError, match="2-D"):
        quantize(np.zeros(256, dtype=np.float32), T.Q8_0)
    with pytest.raises(ValueError, match="bytes"):
        dequantize(np.zeros(10, dtype=np.uint8), T.Q8_0, (1, 32))
