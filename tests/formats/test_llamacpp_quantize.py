"""Ground truth: quantize for real with llama-cpp-python and compare every tensor with our plan.

The embedded SmolLM2-135M (hidden 576: K-quant rows fall back, tied embedding, GQA 3) and
synthetic F16 models (rows that fit 256-blocks, GQA 4 and 1, untied output, 8 experts) cover
the fallback, output, attn_v / ffn_down and MoE rules.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import pytest

from advisor import formats
from advisor.modelspec import ModelSpec
from tests.formats.synth import synthetic_spec, write_gguf

pytestmark = pytest.mark.slow
llama_cpp = pytest.importorskip("llama_cpp")
gguf = pytest.importorskip("gguf")

EMBEDDED_PRESETS = ("Q2_K", "Q3_K_M", "Q4_0", "Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0")
# Every preset that needs no importance matrix (the IQ1/IQ2/IQ3_XXS ones and Q2_K_S need one).
SYNTHETIC_PRESETS = (
    "Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K_S", "Q4_K_M",
    "Q5_K_S", "Q5_K_M", "Q6_K", "Q8_0", "IQ4_NL", "IQ4_XS", "IQ3_S", "IQ3_M", "IQ3_XS",
    "TQ1_0", "TQ2_0", "F16", "BF16",
)
# Known: the Q4_K_M file llama.cpp writes for the embedded model.
EMBEDDED_Q4_K_M_FILE_BYTES = 105_454_144


def quantize(src: Path, dst: Path, preset: str) -> Path:
    ftype = formats.preset(preset).ftype
    name = "LLAMA_FTYPE_ALL_F32" if preset == "F32" else f"LLAMA_FTYPE_MOSTLY_{preset}"
    assert getattr(llama_cpp, name, ftype) == ftype, f"llama.h disagrees on {name}"
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.allow_requantize = True
    params.nthread = 2
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    assert rc == 0, f"llama_model_quantize({preset}) failed"
    return dst


def written(path: Path) -> tuple[dict[str, str], dict[str, int], int, int]:
    """(tensor -> type, tensor -> bytes, data offset, alignment) of a GGUF."""
    r = gguf.GGUFReader(str(path))
    types = {t.name: t.tensor_type.name for t in r.tensors}
    nbytes = {t.name: int(t.n_bytes) for t in r.tensors}
    return types, nbytes, int(r.data_offset), int(r.alignment)


def check(spec: ModelSpec, path: Path, preset: str) -> int:
    """Assert plan == file for every tensor, bytes included; return the predicted file size."""
    plan = formats.preset_plan(spec, preset)
    types, nbytes, data_offset, alignment = written(path)
    assert plan == types, {k: (plan.get(k), v) for k, v in types.items() if plan.get(k) != v}
    shapes = {t.canonical: t.shape for t in spec.tensors}
    predicted = {n: formats.tensor_bytes(plan[n], shapes[n]) for n in plan}
    assert predicted == nbytes
    data = sum(formats.padded(b, alignment) for b in predicted.values())
    assert path.stat().st_size == data_offset + data
    return data


@pytest.fixture(scope="session")
def embedded_spec(embedded_gguf: Path) -> ModelSpec:
    from advisor.inspect import inspect_model

    return inspect_model(str(embedded_gguf))


@pytest.fixture(scope="session")
def embedded_quants(tmp_path_factory: pytest.TempPathFactory,
                    embedded_gguf: Path) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("smollm2-quants")
    return {p: quantize(embedded_gguf, out / f"{p}.gguf", p) for p in EMBEDDED_PRESETS}


@pytest.mark.parametrize("preset", EMBEDDED_PRESETS)
def test_embedded_model_every_tensor(preset: str, embedded_spec: ModelSpec,
                                     embedded_quants: dict[str, Path]) -> None:
    path = embedded_quants[preset]
    data = check(embedded_spec, path, preset)
    # the header is the source's (same keys, same tensor names): the whole file is predictable
    assert embedded_spec.metadata_bytes + data == path.stat().st_size


def test_embedded_q4_k_m_size(embedded_quants: dict[str, Path]) -> None:
    assert embedded_quants["Q4_K_M"].stat().st_size == EMBEDDED_Q4_K_M_FILE_BYTES


SYNTHETIC = {
    "gqa4": dict(n_kv_heads=1),
    "gqa1-tied": dict(n_kv_heads=4, tied=True),
    "moe8": dict(n_kv_heads=2, n_expert=8, n_layers=8, ffn=256),
}


@pytest.fixture(scope="session")
def synthetic_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[ModelSpec, Path]]:
    out = tmp_path_factory.mktemp("synthetic")
    models = {}
    for key, kw in SYNTHETIC.items():
        spec = synthetic_spec(**kw)  # type: ignore[arg-type]
        models[key] = (spec, write_gguf(spec, out / f"{key}.gguf"))
    return models


@pytest.mark.parametrize("model", sorted(SYNTHETIC))
@pytest.mark.parametrize("preset", SYNTHETIC_PRESETS)
def test_synthetic_every_tensor(model: str, preset: str, tmp_path: Path,
                                synthetic_models: dict[str, tuple[ModelSpec, Path]]) -> None:
    spec, src = synthetic_models[model]
    check(spec, quantize(src, tmp_path / f"{preset}.gguf", preset), preset)


def test_synthetic_moe_mxfp4(tmp_path: Path,
                             synthetic_models: dict[str, tuple[ModelSpec, Path]]) -> None:
    spec, src = synthetic_models["moe8"]
    path = quantize(src, tmp_path / "mxfp4.gguf", "MXFP4_MOE")
    check(spec, path, "MXFP4_MOE")
    assert formats.preset_plan(spec, "MXFP4_MOE")["blk.0.ffn_up_exps.weight"] == "MXFP4"
