"""llama.cpp's memory, predicted term by term, against what llama.cpp itself reports here."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from advisor import formats
from advisor.calibration.memory import compute_buffer, kv_bytes, kv_cells, repacked_bytes
from advisor.inspect import inspect_model
from advisor.probe import get_hardware

MIB = 2**20


def _reported(path: Path, n_ctx: int, n_ubatch: int,
              caplog: pytest.LogCaptureFixture) -> dict[str, float]:
    """The buffer sizes llama.cpp logs when it loads `path` and creates a context (MiB)."""
    pytest.importorskip("llama_cpp")
    from backends.gguf import LlamaSession

    caplog.clear()
    with caplog.at_level(logging.DEBUG):
        LlamaSession(path, n_ctx=n_ctx, n_batch=n_ubatch, threads=1).close()
    text = "\n".join(r.getMessage() for r in caplog.records)
    out = {}
    for key, pattern in (("kv", r"KV buffer size =\s+([\d.]+) MiB"),
                         ("compute", r"CPU compute buffer size =\s+([\d.]+) MiB"),
                         ("repack", r"CPU_REPACK model buffer size =\s+([\d.]+) MiB")):
        found = re.findall(pattern, text)
        out[key] = sum(float(x) for x in found)
    return out


@pytest.mark.parametrize("n_ctx,n_ubatch", [(640, 512), (2048, 512), (640, 64), (4096, 256)])
def test_kv_cache_and_compute_buffer(embedded_gguf: Path, n_ctx: int, n_ubatch: int,
                                     caplog: pytest.LogCaptureFixture) -> None:
    spec = inspect_model(embedded_gguf)
    got = _reported(embedded_gguf, n_ctx, n_ubatch, caplog)
    assert kv_cells(n_ctx) % 256 == 0 and kv_cells(n_ctx) >= n_ctx
    assert kv_bytes(spec, n_ctx) / MIB == pytest.approx(got["kv"], abs=0.01)
    assert compute_buffer(spec, n_ubatch) / MIB == pytest.approx(got["compute"], rel=0.05)


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["Q4_0", "Q4_K_M", "Q8_0"])
def test_repacked_weights(embedded_quants: dict[str, Path], preset: str,
                          caplog: pytest.LogCaptureFixture) -> None:
    isa = get_hardware(None, None).cpu.isa
    if "avx2" not in isa:
        pytest.skip("the repack table covers x86 AVX2 builds only")
    path = embedded_quants[preset]
    spec = inspect_model(path)
    per_tensor = {t.canonical: formats.tensor_bytes(t.dtype, t.shape) for t in spec.tensors}
    predicted = repacked_bytes(spec, per_tensor, {}, isa) / MIB
    reported = _reported(path, 640, 512, caplog)["repack"]
    assert predicted == pytest.approx(reported, abs=0.05)
    assert (predicted > 1) == (preset != "Q8_0")  # Q8_0 is not repacked on x86
