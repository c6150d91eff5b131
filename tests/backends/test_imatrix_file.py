"""`--imatrix FILE` (issue 21): llama-imatrix's GGUF and legacy .dat files give the same
quantized bytes as the importance matrix the advisor computes itself; a bad file is refused
with one line."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from advisor.errors import BadInput
from advisor.modelspec import ModelSpec
from advisor.space.named import plan_for_format
from backends import get_backend
from backends.base import QuantizeOptions
from backends.gguf.backend import IMATRIX_CHUNKS
from backends.gguf.imatrix import Imatrix, imatrix_for
from backends.gguf.imatrix_file import load_imatrix_file
from tests.backends.conftest import THREADS, Quantized


def write_legacy(imatrix: Imatrix, path: Path, ncall: int = 1) -> Path:
    """llama-imatrix's legacy format (save_imatrix_legacy): values stored as mean x ncall."""
    with path.open("wb") as f:
        f.write(struct.pack("<i", len(imatrix.values)))
        for name, v in imatrix.values.items():
            raw = name.encode()
            f.write(struct.pack("<i", len(raw)) + raw + struct.pack("<ii", ncall, v.size))
            f.write((v.astype(np.float64) * ncall).astype("<f4").tobytes())
        f.write(struct.pack("<i", 1) + struct.pack("<i", 4) + b"text")
    return path


def write_gguf(imatrix: Imatrix, path: Path, count: float = 512.0) -> Path:
    """llama-imatrix's GGUF format: <name>.in_sum2 (sums) and <name>.counts per matrix."""
    from gguf import GGUFWriter

    w = GGUFWriter(str(path), arch="imatrix")
    for name, v in imatrix.values.items():
        w.add_tensor(f"{name}.in_sum2", (v.astype(np.float64) * count).astype(np.float32)
                     .reshape(1, -1))
        w.add_tensor(f"{name}.counts", np.array([count], dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture(scope="module")
def computed(embedded_spec: ModelSpec, calib_text: str) -> Imatrix:
    """The matrix the backend computes for `quantized(plan, True)` (from the cache)."""
    return imatrix_for(Path(embedded_spec.path), calib_text, key_path=Path(embedded_spec.path),
                       threads=THREADS, max_chunks=IMATRIX_CHUNKS)


@pytest.mark.parametrize("fmt", ["gguf", "legacy"])
def test_a_llama_cpp_imatrix_file_gives_the_bytes_of_the_computed_one(
        fmt: str, embedded_spec: ModelSpec, quantized: Quantized, computed: Imatrix,
        tmp_path: Path) -> None:
    path = (write_gguf if fmt == "gguf" else write_legacy)(computed, tmp_path / f"m.{fmt}")
    loaded = load_imatrix_file(path)
    assert set(loaded.values) == set(computed.values)
    scaled = load_imatrix_file(write_legacy(computed, tmp_path / "x3.dat", ncall=3)
                               if fmt == "legacy" else write_gguf(computed, tmp_path / "c.gguf", 3))
    for name, v in computed.values.items():  # the mean: sums / counts, or values / ncall
        np.testing.assert_allclose(loaded.values[name], v, rtol=1e-6)
        np.testing.assert_allclose(scaled.values[name], v, rtol=1e-6)
    plan = plan_for_format(embedded_spec, "Q3_K_M")
    reference, _ = quantized(plan, True)
    out = tmp_path / "from-file"
    written = get_backend("gguf").quantize(
        embedded_spec, plan, out, QuantizeOptions(imatrix=True, imatrix_file=str(path),
                                                  threads=THREADS))
    assert written.options["imatrix"] and written.options["calibration_sha256"].startswith("file:")
    ours = (reference / "model.gguf").read_bytes()
    theirs = (out / "model.gguf").read_bytes()
    # the header records the imatrix's provenance; the tensor data must be identical
    assert len(ours) == len(theirs) and ours[-50_000_000:] == theirs[-50_000_000:]


def _refused(path: Path, match: str) -> None:
    with pytest.raises(BadInput, match=match):
        load_imatrix_file(path)


def test_bad_imatrix_files_are_refused(computed: Imatrix, tmp_path: Path) -> None:
    good = write_legacy(computed, tmp_path / "good.dat").read_bytes()
    cases = {
        "empty.dat": (b"", "empty"),
        "negative.dat": (struct.pack("<i", -1), "entries do not fit"),
        "huge-count.dat": (struct.pack("<i", 2**30) + good[4:], "entries do not fit"),
        "truncated.dat": (good[: len(good) // 2], "truncated|past the end"),
        "long-name.dat": (struct.pack("<ii", 1, 2**20) + bytes(64), "entry name of"),
        "values-past-end.dat": (struct.pack("<ii", 1, 1) + b"a" + struct.pack("<ii", 1, 2**28),
                                "past the end"),
        "nan.dat": (struct.pack("<ii", 1, 1) + b"a" + struct.pack("<ii", 1, 2)
                    + np.array([1.0, np.nan], "<f4").tobytes(), "non-finite"),
        "not-imatrix.gguf": (b"GGUF" + b"\0" * 60, "GGUF"),
    }
    for name, (raw, match) in cases.items():
        (tmp_path / name).write_bytes(raw)
        _refused(tmp_path / name, match)
    _refused(tmp_path / "missing.dat", "is not a file")


def test_an_imatrix_of_another_model_is_refused(embedded_spec: ModelSpec, computed: Imatrix,
                                                tmp_path: Path) -> None:
    name = next(iter(computed.values))
    other = Imatrix({**computed.values, name: computed.values[name][:-1]}, 0, 0, "x")
    path = write_legacy(other, tmp_path / "other.dat")
    with pytest.raises(BadInput, match="computed for another model"):
        get_backend("gguf").quantize(
            embedded_spec, plan_for_format(embedded_spec, "Q3_K_M"), tmp_path / "o",
            QuantizeOptions(imatrix=True, imatrix_file=str(path), threads=THREADS))


def test_the_cli_takes_imatrix_file_and_refuses_a_missing_one(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "advisor.cli", "quantize", "--preset", "Q4_K_M",
                        "--imatrix", str(tmp_path / "nope.dat"), "--out", str(tmp_path / "o")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "nope.dat is not a file" in r.stderr and not (tmp_path / "o").exists()
