"""The streamed sweep (one layer in float at a time) gives the table the in-memory replay does."""

from __future__ import annotations

from pathlib import Path

import pytest

import advisor.sensitivity.measure as measure
import advisor.sensitivity.stream as stream
import backends.gguf.layers as layers
from advisor.inspect import inspect_model
from advisor.sensitivity import SensitivityConfig, SensitivityTable
from advisor.sensitivity.measure import measure_sensitivity
from advisor.space import gguf_plan_space
from backends.gguf.convert import convert_hf_to_gguf
from tests.backends.test_gguf_convert import DATA, build_tiny

TEXT = DATA.read_text(encoding="utf-8")


@pytest.fixture(autouse=True)
def stream_every_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tiny models would be measured in memory (advisor.sensitivity.measure
    IN_MEMORY_MAX): stream them."""
    monkeypatch.setattr(measure, "IN_MEMORY_MAX", 0)


def _both(path: Path, cfg: SensitivityConfig,
          monkeypatch: pytest.MonkeyPatch) -> tuple[SensitivityTable, SensitivityTable]:
    space = gguf_plan_space(inspect_model(path), imatrix=False)
    streamed = measure_sensitivity(path, space, TEXT, config=cfg, threads=2)
    with monkeypatch.context() as m:
        m.setattr(layers, "streamable", lambda p: False)
        in_memory = measure_sensitivity(path, space, TEXT, config=cfg, threads=2)
    return streamed, in_memory


@pytest.mark.parametrize("tie", [False, True])
def test_streamed_table_equals_the_in_memory_one(tmp_path: Path, tie: bool,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    build_tiny("llama", tmp_path / "hf", TEXT[:8000], num_hidden_layers=6,
               tie_word_embeddings=tie)
    path = convert_hf_to_gguf(inspect_model(tmp_path / "hf"), tmp_path / "gguf", out_type="F16")
    assert layers.streamable(path)
    cfg = SensitivityConfig(n_ctx=16, anchors=3)
    streamed, in_memory = _both(path, cfg, monkeypatch)
    assert streamed.extra["streamed"] and "streamed" not in in_memory.extra
    assert streamed.measured == in_memory.measured
    assert streamed.n_scored == in_memory.n_scored
    scaled = 0
    for name, costs in in_memory.costs.items():
        assert streamed.costs[name] == pytest.approx(costs, rel=1e-5, abs=1e-12), name
        scaled += name in in_memory.measured and not in_memory.measured[name]
    assert scaled > 0  # layers 1, 2 and 4 are not anchors: their tensors are scaled
    head = "token_embd.weight" if tie else "output.weight"
    assert streamed.measured[head] == streamed.space.choice(head).types  # every one measured


def test_only_the_llama_layout_is_streamed(tmp_path: Path) -> None:
    build_tiny("qwen2", tmp_path / "hf", TEXT[:8000])
    path = convert_hf_to_gguf(inspect_model(tmp_path / "hf"), tmp_path / "gguf", out_type="F16")
    assert not layers.streamable(path)


def test_device_resolution() -> None:
    import torch

    from advisor.errors import BadInput
    from backends.hf import resolve_device

    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else
                                      "mps" if torch.backends.mps.is_available() else "cpu")
    with pytest.raises(BadInput, match="not a device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(BadInput, match="torch sees no cuda device"):
            resolve_device("cuda")


@pytest.mark.gpu
def test_streamed_table_on_cuda_equals_the_cpu_one(tmp_path: Path) -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA (or ROCm) GPU")
    build_tiny("llama", tmp_path / "hf", TEXT[:8000], num_hidden_layers=6)
    path = convert_hf_to_gguf(inspect_model(tmp_path / "hf"), tmp_path / "gguf", out_type="F16")
    space = gguf_plan_space(inspect_model(path), imatrix=False)
    cfg = SensitivityConfig(n_ctx=16, anchors=3)
    cpu = measure_sensitivity(path, space, TEXT, config=cfg, threads=2)
    gpu = measure_sensitivity(path, space, TEXT, config=cfg, threads=2, device="cuda")
    assert gpu.extra["device"] == "cuda" and gpu.measured == cpu.measured
    for name, costs in cpu.costs.items():
        assert gpu.costs[name] == pytest.approx(costs, rel=1e-3, abs=1e-9), name


def test_sampled_rows() -> None:
    assert stream.sampled_rows(1000, 1) is None
    assert stream.sampled_rows(100, 4) is None  # 25 rows: too few to sample
    rows = stream.sampled_rows(1024, 4)
    assert rows is not None and len(rows) == 256 and rows[0] == 0 and rows[-1] == 1020


def test_row_sampled_errors_keep_the_measured_kls(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """row_sample quantizes every other row for the output errors: the end-to-end KLs are the
    same measurements, the scaled costs estimates of the all-rows ones."""
    monkeypatch.setattr(stream, "MIN_SAMPLED_ROWS", 8)
    build_tiny("llama", tmp_path / "hf", TEXT[:8000], num_hidden_layers=6)
    path = convert_hf_to_gguf(inspect_model(tmp_path / "hf"), tmp_path / "gguf", out_type="F16")
    space = gguf_plan_space(inspect_model(path), imatrix=False)
    rows = [measure_sensitivity(path, space, TEXT, threads=2,
                                config=SensitivityConfig(n_ctx=16, anchors=3, row_sample=k))
            for k in (1, 2)]
    assert rows[0].measured == rows[1].measured
    ratios = []
    for name, measured in rows[0].measured.items():
        for g in measured:
            assert rows[1].costs[name][g] == pytest.approx(rows[0].costs[name][g], rel=1e-5)
        ratios += [rows[1].costs[name][g] / rows[0].costs[name][g]
                   for g in rows[0].costs[name] if g not in measured and rows[0].costs[name][g]]
    assert ratios and all(0.5 < r < 2.0 for r in ratios)
    assert max(abs(r - 1) for r in ratios) > 1e-6  # the sample did change the estimates


def test_models_from_1b_parameters_sample_every_4th_row() -> None:
    """Issue 17: the table of a 1B+ model quantizes every 4th row of its candidates (time and
    memory); smaller ones, and a table without anchors, every row."""
    from advisor.sensitivity.gguf import ROW_SAMPLE_FROM, row_sample

    assert row_sample(134_515_008, 8) == 1
    assert row_sample(int(ROW_SAMPLE_FROM), 8) == 4 and row_sample(1_711_376_384, 8) == 4
    assert row_sample(1_711_376_384, 0) == 1


def test_candidates_are_kept_as_bytes_and_read_back_as_llama_cpp_dequantizes_them() -> None:
    import numpy as np

    from advisor.formats import ggml_type
    from advisor.sensitivity.measure import _encoded
    from kernels.ggml_quant import quant_dequant

    w = np.random.default_rng(0).standard_normal((8, 512)).astype(np.float32)
    c = stream.Candidates([_encoded(w, g, None) for g in ("Q4_K", "Q8_0", "F16")], w.shape)
    assert len(c) == 3 and len(list(c)) == 3
    assert isinstance(c[1:], stream.Candidates) and len(c[1:]) == 2
    np.testing.assert_array_equal(c[0], quant_dequant(w, ggml_type("Q4_K").type_id))
    np.testing.assert_array_equal(c[1:][0], quant_dequant(w, ggml_type("Q8_0").type_id))
    np.testing.assert_array_equal(c[2], w.astype(np.float16).astype(np.float32))
    held = [data.nbytes for data, _ in c._items]
    assert held[0] == 8 * 2 * 144 and held[1] == 8 * 16 * 34  # Q4_K, Q8_0 blocks: not float32
