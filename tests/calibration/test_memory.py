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


def test_vllm_takes_its_utilization_and_needs_the_blocks(tmp_path: Path) -> None:
    """vLLM holds gpu_memory_utilization x the device, and a plan fits only when the KV blocks
    for the requested context remain after the weights, activations and non-torch memory."""
    import json

    from advisor.calibration.memory import VLLM_BLOCK_TOKENS, vllm_memory
    from advisor.estimate import Workload, estimate
    from advisor.space.named import plan_for_format
    from tests.calibration.test_published import LLAMA3_8B

    d = tmp_path / "llama-3-8b"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(LLAMA3_8B))
    spec = inspect_model(d, weights=False)
    hw = get_hardware("l40s", None)  # 48 GB
    vm = vllm_memory(spec, 8000, 1, hw.primary.memory.value)  # type: ignore[union-attr]
    per_token = 2 * 32 * 8 * 128 * 2
    assert vm.kv == -(-8000 // VLLM_BLOCK_TOKENS) * VLLM_BLOCK_TOKENS * per_token
    assert vm.reserved == int(0.9 * hw.primary.memory.value)  # type: ignore[union-attr]
    plan = plan_for_format(spec, "W8A16")
    fits = estimate(spec, plan, hw, Workload(prompt_tokens=512, new_tokens=128, context=8192))
    assert fits.runtime == "vllm" and fits.fits
    assert fits.device_memory is not None and fits.device_memory.value == vm.reserved
    # as many sequences as the full card would hold, but not the 90% vLLM takes
    free = hw.primary.memory.value - fits.weights.value - fits.overhead.value  # type: ignore
    n = int(free // (8192 * per_token))
    crowded = estimate(spec, plan, hw, Workload(prompt_tokens=512, new_tokens=128,
                                                 concurrency=n, context=8192))
    assert crowded.total_memory.value <= hw.primary.memory.value  # type: ignore[union-attr]
    assert not crowded.fits
