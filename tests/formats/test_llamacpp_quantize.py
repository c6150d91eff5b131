"""Ground truth: quantize for real with llama-cpp-python and compare every tensor with our plan.

The embedded SmolLM2-135M (hidden 576: K-quant rows fall back, tied embedding, GQA 3) and
synthetic F16 models (rows that fit 256-blocks, GQA 4 and 1, untied output, 8 experts) cover
the fallback, output, attn_v / ffn_down, MoE and imatrix rules, and the quantize options.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from advisor import formats
from advisor.modelspec import ModelSpec
from tests.formats.synth import synthetic_spec, write_gguf

pytestmark = pytest.mark.slow
llama_cpp = pytest.importorskip("llama_cpp")
gguf = pytest.importorskip("gguf")

EMBEDDED_PRESETS = ("Q2_K", "Q3_K_M", "Q4_0", "Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0")
# Known: the Q4_K_M file llama.cpp writes for the embedded model.
EMBEDDED_Q4_K_M_FILE_BYTES = 105_454_144

SYNTHETIC = {
    "gqa4": dict(n_layers=16, ffn=512, n_kv_heads=1),
    "gqa1-tied": dict(n_layers=8, ffn=256, n_kv_heads=4, tied=True),
    "moe8": dict(n_layers=4, ffn=256, n_kv_heads=2, n_expert=8),
}
SYNTHETIC_PRESETS = (
    "Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K_S", "Q4_K_M",
    "Q5_K_S", "Q5_K_M", "Q6_K", "Q8_0", "TQ1_0", "TQ2_0", "F16", "BF16",
)
IQ_PRESETS = ("IQ4_NL", "IQ4_XS", "IQ3_S", "IQ3_M")  # slower quantizers: the smaller models
# llama.cpp refuses these without an importance matrix; requires_imatrix() must say so.
IMATRIX_PRESETS = ("IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ1_S", "IQ1_M", "IQ3_XXS", "IQ3_XS",
                   "Q2_K_S")


def run_quantize(src: Path, dst: Path, preset: str, *, imatrix: ModelSpec | None = None,
                 overrides: Sequence[tuple[str, str]] = (), **options: Any) -> int:
    """llama_model_quantize's return code (0 written, 1 refused); options as in preset_plan."""
    ftype = formats.preset(preset).ftype
    name = "LLAMA_FTYPE_ALL_F32" if preset == "F32" else f"LLAMA_FTYPE_MOSTLY_{preset}"
    assert getattr(llama_cpp, name, ftype) == ftype, f"llama.h disagrees on {name}"
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.allow_requantize = True
    params.nthread = 2
    for key in ("output_tensor_type", "token_embedding_type"):
        if options.get(key):
            setattr(params, key, formats.ggml_type(options[key]).type_id)
    params.pure = bool(options.get("pure", False))
    params.quantize_output_tensor = bool(options.get("quantize_output_tensor", True))
    keep: list[Any] = []  # ctypes buffers must outlive the call
    if overrides:
        arr = (llama_cpp.llama_model_tensor_override * (len(overrides) + 1))()
        for i, (pattern, tt) in enumerate(overrides):
            arr[i].pattern = pattern.encode()
            arr[i].type = formats.ggml_type(tt).type_id
        ptr = ctypes.POINTER(llama_cpp.llama_model_tensor_override)
        params.tt_overrides = ctypes.cast(arr, ptr)
        keep.append(arr)
    if imatrix is not None:
        # an all-ones importance matrix: ne[0] * ne[2] values per 2-D/3-D weight
        mats = [t for t in imatrix.tensors if len(t.shape) >= 2]
        arr = (llama_cpp.llama_model_imatrix_data * (len(mats) + 1))()
        for i, t in enumerate(mats):
            n = t.shape[-1] * (t.shape[-3] if len(t.shape) == 3 else 1)
            data = (ctypes.c_float * n)(*([1.0] * n))
            keep.append(data)
            arr[i].name = t.canonical.encode()
            arr[i].data = ctypes.cast(data, ctypes.POINTER(ctypes.c_float))
            arr[i].size = n
        params.imatrix = ctypes.cast(arr, ctypes.POINTER(llama_cpp.llama_model_imatrix_data))
        keep.append(arr)
    return int(llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(),
                                              ctypes.byref(params)))


def quantize(src: Path, dst: Path, preset: str, **kw: Any) -> Path:
    assert run_quantize(src, dst, preset, **kw) == 0, f"llama_model_quantize({preset}) failed"
    return dst


def check(spec: ModelSpec, path: Path, preset: str, **plan_opts: Any) -> int:
    """Assert plan == file for every tensor, bytes included; return the tensor-data bytes."""
    plan = formats.preset_plan(spec, preset, **plan_opts)
    r = gguf.GGUFReader(str(path))
    types = {t.name: t.tensor_type.name for t in r.tensors}
    nbytes = {t.name: int(t.n_bytes) for t in r.tensors}
    assert plan == types, {k: (plan.get(k), v) for k, v in types.items() if plan.get(k) != v}
    shapes = {t.canonical: t.shape for t in spec.tensors}
    predicted = {n: formats.tensor_bytes(plan[n], shapes[n]) for n in plan}
    assert predicted == nbytes
    data = sum(formats.padded(b, int(r.alignment)) for b in predicted.values())
    assert path.stat().st_size == int(r.data_offset) + data
    return data


@pytest.fixture(scope="session")
def embedded_spec(embedded_gguf: Path) -> ModelSpec:
    from advisor.inspect import inspect_model

    return inspect_model(str(embedded_gguf))


@pytest.mark.parametrize("preset", EMBEDDED_PRESETS)
def test_embedded_model_every_tensor(preset: str, embedded_spec: ModelSpec,
                                     embedded_quants: dict[str, Path]) -> None:
    path = embedded_quants[preset]
    data = check(embedded_spec, path, preset)
    # the header is the source's (same keys, same tensor names): the whole file is predictable
    assert embedded_spec.metadata_bytes + data == path.stat().st_size


def test_embedded_q4_k_m_size(embedded_quants: dict[str, Path]) -> None:
    assert embedded_quants["Q4_K_M"].stat().st_size == EMBEDDED_Q4_K_M_FILE_BYTES


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


@pytest.mark.parametrize("model", ["gqa1-tied", "moe8"])
@pytest.mark.parametrize("preset", IQ_PRESETS)
def test_synthetic_iq_presets(model: str, preset: str, tmp_path: Path,
                              synthetic_models: dict[str, tuple[ModelSpec, Path]]) -> None:
    spec, src = synthetic_models[model]
    check(spec, quantize(src, tmp_path / f"{preset}.gguf", preset), preset)


def test_synthetic_moe_mxfp4(tmp_path: Path,
                             synthetic_models: dict[str, tuple[ModelSpec, Path]]) -> None:
    spec, src = synthetic_models["moe8"]
    check(spec, quantize(src, tmp_path / "mxfp4.gguf", "MXFP4_MOE"), "MXFP4_MOE")
    assert formats.preset_plan(spec, "MXFP4_MOE")["blk.0.ffn_up_exps.weight"] == "MXFP4"


@pytest.mark.parametrize("model", sorted(SYNTHETIC))
@pytest.mark.parametrize("preset", IMATRIX_PRESETS)
def test_synthetic_imatrix_presets_are_refused(
    model: str, preset: str, tmp_path: Path,
    synthetic_models: dict[str, tuple[ModelSpec, Path]],
) -> None:
    spec, src = synthetic_models[model]
    assert formats.requires_imatrix(spec, preset)
    assert run_quantize(src, tmp_path / f"{preset}.gguf", preset) != 0


# IQ1_S and IQ2_M run 20-35 s on this model; IQ2_XXS takes the same IQ1/IQ2 branch.
@pytest.mark.parametrize("preset", ["IQ2_XXS", "IQ3_XXS", "Q2_K_S", "Q4_0"])
def test_synthetic_with_imatrix(preset: str, tmp_path: Path,
                                synthetic_models: dict[str, tuple[ModelSpec, Path]]) -> None:
    spec, src = synthetic_models["gqa1-tied"]
    path = quantize(src, tmp_path / f"{preset}.gguf", preset, imatrix=spec)
    check(spec, path, preset, imatrix=True)


OPTIONS: list[dict[str, Any]] = [
    {"pure": True},
    {"output_tensor_type": "Q8_0", "token_embedding_type": "Q5_K"},
    {"quantize_output_tensor": False},
    {"overrides": [(r"attn_q\.weight", "Q8_0"), (r"blk\.1\.", "Q6_K")]},
]


@pytest.mark.parametrize("opts", OPTIONS, ids=lambda o: "-".join(o))
def test_synthetic_quantize_options(opts: dict[str, Any], tmp_path: Path,
                                    synthetic_models: dict[str, tuple[ModelSpec, Path]]) -> None:
    spec, src = synthetic_models["gqa4"]
    check(spec, quantize(src, tmp_path / "opts.gguf", "Q4_K_M", **opts), "Q4_K_M", **opts)
