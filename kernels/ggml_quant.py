"""Bindings to libggml's own quantizer: quantize / dequantize one tensor to any GGML type.

`ggml_quantize_chunk` is what llama.cpp's `llama_model_quantize` calls per tensor (with the
importance matrix row when one is given), so a tensor quantized here is byte-identical to the one
llama.cpp writes. Pure: arrays in, arrays out; the library is the one llama-cpp-python ships.
"""

from __future__ import annotations

import ctypes
import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np

_LIB_NAMES = ("libggml-base.so", "libggml-base.dylib", "ggml-base.dll")


class _TypeTraits(ctypes.Structure):
    # struct ggml_type_traits in ggml.h
    _fields_ = [
        ("type_name", ctypes.c_char_p),
        ("blck_size", ctypes.c_int64),
        ("blck_size_interleave", ctypes.c_int64),
        ("type_size", ctypes.c_size_t),
        ("is_quantized", ctypes.c_bool),
        ("to_float", ctypes.c_void_p),
        ("from_float_ref", ctypes.c_void_p),
    ]


_TO_FLOAT = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)


@lru_cache(maxsize=1)
def _lib() -> ctypes.CDLL:
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("llama-cpp-python is not installed: pip install llama-cpp-python")
    for loc in spec.submodule_search_locations:
        for name in _LIB_NAMES:
            path = Path(loc) / "lib" / name
            if path.exists():
                lib = ctypes.CDLL(str(path))
                lib.ggml_quantize_chunk.restype = ctypes.c_size_t
                lib.ggml_quantize_chunk.argtypes = [
                    ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                    ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p,
                ]
                lib.ggml_get_type_traits.restype = ctypes.POINTER(_TypeTraits)
                lib.ggml_get_type_traits.argtypes = [ctypes.c_int]
                lib.ggml_quantize_requires_imatrix.restype = ctypes.c_bool
                lib.ggml_quantize_requires_imatrix.argtypes = [ctypes.c_int]
                lib.ggml_row_size.restype = ctypes.c_size_t
                lib.ggml_row_size.argtypes = [ctypes.c_int, ctypes.c_int64]
                return lib
    raise ImportError("libggml-base not found inside llama_cpp/lib; reinstall llama-cpp-python")


def row_size(type_id: int, n_per_row: int) -> int:
    """Bytes of one row of `n_per_row` values in GGML type `type_id`."""
    return int(_lib().ggml_row_size(type_id, n_per_row))


def requires_imatrix(type_id: int) -> bool:
    return bool(_lib().ggml_quantize_requires_imatrix(type_id))


def quantize(x: np.ndarray, type_id: int, imatrix: np.ndarray | None = None) -> np.ndarray:
    """Quantize a 2-D float32 array (rows, n_per_row) to GGML type `type_id`; returns the bytes.

    `imatrix` holds one importance weight per column (llama.cpp's imatrix for this tensor)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"quantize expects a 2-D array, got shape {x.shape}")
    rows, n = x.shape
    if imatrix is not None:
        imatrix = np.ascontiguousarray(imatrix, dtype=np.float32)
        if imatrix.shape != (n,):
            raise ValueError(f"imatrix shape {imatrix.shape} != ({n},)")
    elif requires_imatrix(type_id):
        raise ValueError(f"GGML type {type_id} requires an importance matrix")
    out = np.empty(rows * row_size(type_id, n), dtype=np.uint8)
    written = _lib().ggml_quantize_chunk(
        type_id, x.ctypes.data, out.ctypes.data, 0, rows, n,
        imatrix.ctypes.data if imatrix is not None else None,
    )
    if written != out.nbytes:
        raise RuntimeError(f"ggml_quantize_chunk wrote {written} bytes, expected {out.nbytes}")
    return out


def dequantize(data: np.ndarray, type_id: int, shape: tuple[int, int]) -> np.ndarray:
    """Dequantize GGML bytes back to float32 of `shape` with libggml's own `to_float`."""
    data = np.ascontiguousarray(data, dtype=np.uint8)
    rows, n = shape
    if data.nbytes != rows * row_size(type_id, n):
        raise ValueError(f"{data.nbytes} bytes do not hold {shape} values of type {type_id}")
    traits = _lib().ggml_get_type_traits(type_id).contents
    if not traits.to_float:
        raise ValueError(f"GGML type {type_id} has no dequantization")
    out = np.empty((rows, n), dtype=np.float32)
    _TO_FLOAT(traits.to_float)(data.ctypes.data, out.ctypes.data, rows * n)
    return out


def quant_dequant(x: np.ndarray, type_id: int, imatrix: np.ndarray | None = None) -> np.ndarray:
    """The float32 values a tensor has after a round trip through GGML type `type_id`."""
    return dequantize(quantize(x, type_id, imatrix), type_id, x.shape)


def _reference_q8_0(x: np.ndarray) -> np.ndarray:
    """Plain-numpy Q8_0 round trip, after quantize_row_q8_0_ref in ggml-quants.c: per block of
    32, d = amax / 127 stored as fp16, q = round-half-away(x / d)."""
    blocks = x.astype(np.float32).reshape(-1, 32)
    amax = np.abs(blocks).max(axis=1, keepdims=True)
    d = amax / 127.0
    with np.errstate(divide="ignore"):
        inv = np.where(d > 0, 1.0 / d, 0.0).astype(np.float32)
    v = blocks * inv
    q = np.trunc(v + np.copysign(0.5, v)).astype(np.int8)  # roundf: half away from zero
    d16 = d.astype(np.float16).astype(np.float32)
    return (q.astype(np.float32) * d16).reshape(x.shape)


def _reference_q4_0(x: np.ndarray) -> np.ndarray:
    """Plain-numpy Q4_0 round trip, after quantize_row_q4_0_ref: per block of 32, d = max / -8
    where max is the value of largest magnitude (sign kept), q = min(15, trunc(x / d + 8.5))."""
    blocks = x.astype(np.float32).reshape(-1, 32)
    idx = np.abs(blocks).argmax(axis=1)
    mx = blocks[np.arange(len(blocks)), idx][:, None]
    d = mx / np.float32(-8.0)
    with np.errstate(divide="ignore"):
        inv = np.where(d != 0, np.float32(1.0) / d, 0.0).astype(np.float32)
    q = np.minimum(15, np.trunc(blocks * inv + np.float32(8.5))).astype(np.int8)
    d16 = d.astype(np.float16).astype(np.float32)
    return ((q.astype(np.float32) - 8) * d16).reshape(x.shape)
