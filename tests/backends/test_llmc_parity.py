"""The streamed writers (rtn, fp8, smoothquant) against llm-compressor's own `oneshot` on the same
tiny model and calibration windows: the same compressed-tensors config, the same scales (to the
float16 rounding of the checkpoint), the same norms, the same integer / FP8 codes but where the
two round w / scale with differently rounded scales (one code apart, under 2% of the weights).

Why the writers stream instead of calling oneshot: on a CPU oneshot holds the whole float32
model (backends.hf.llmc); these tests are what makes the streamed result llm-compressor's."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from advisor.inspect import inspect_model
from advisor.modelspec import ModelSpec
from advisor.space.named import plan_for_format
from backends import get_backend
from backends.base import QuantizeOptions
from backends.hf import llmc
from backends.hf.base import calibration_windows, plan_job
from tests.backends.hf_tiny import embedded_tokenizer_dir, tiny_with_tokenizer

CALIB = QuantizeOptions(threads=2, extra={"calib_windows": 2})
CASES = {"rtn": ("W4A16", 64), "fp8": ("W8A8-FP8", None), "smoothquant": ("W8A8-INT8", None)}

pytestmark = pytest.mark.skipif(not llmc.available(), reason="llm-compressor not installed")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ModelSpec]:
    root = tmp_path_factory.mktemp("parity")
    model_dir, _ = tiny_with_tokenizer(root, embedded_tokenizer_dir(), num_hidden_layers=3)
    return model_dir, inspect_model(str(model_dir))


def _recipe(backend: str) -> Any:
    from llmcompressor.modifiers.quantization import QuantizationModifier
    from llmcompressor.modifiers.smoothquant import SmoothQuantModifier

    if backend == "rtn":  # the plan's own config_groups, calibration-free min/max
        return lambda groups, ignore: [QuantizationModifier(config_groups=groups, ignore=ignore)]
    if backend == "fp8":
        return lambda groups, ignore: [QuantizationModifier(targets="Linear", scheme="FP8_DYNAMIC",
                                                            ignore=["lm_head"])]
    return lambda groups, ignore: [SmoothQuantModifier(smoothing_strength=0.5),
                                   QuantizationModifier(targets="Linear", scheme="W8A8",
                                                        ignore=["lm_head"])]


def _tensors(d: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    out: dict[str, torch.Tensor] = {}
    for f in sorted(d.glob("*.safetensors")):
        out.update(load_file(str(f)))
    return out


def _codes(t: dict[str, torch.Tensor], name: str, bits: int) -> torch.Tensor:
    """A linear's stored integer / FP8 codes, unpacked."""
    if f"{name}.weight_packed" in t:
        from compressed_tensors.compressors.pack_quantized.helpers import unpack_from_int32

        shape = torch.Size(t[f"{name}.weight_shape"].tolist())
        return unpack_from_int32(t[f"{name}.weight_packed"], bits, shape).to(torch.int16)
    w = t[f"{name}.weight"]
    return w.view(torch.uint8).to(torch.int16) if w.dtype == torch.float8_e4m3fn \
        else w.to(torch.int16)


def _groups(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """config_groups without llm-compressor's observer name (it records what computed the
    scales, which the streamed writers do without an observer object)."""
    out = []
    for g in cfg["config_groups"].values():
        g = {**g, "weights": {k: v for k, v in g["weights"].items() if k != "observer"}}
        out.append(g)
    return out


@pytest.mark.parametrize("backend", sorted(CASES))
def test_streamed_writer_is_llm_compressors_checkpoint(backend: str, tiny: tuple,
                                                       tmp_path: Path) -> None:
    model_dir, spec = tiny
    fmt, group = CASES[backend]
    plan = plan_for_format(spec, fmt, group_size=group, backend=backend) if group \
        else plan_for_format(spec, fmt, backend=backend)
    ours, theirs = tmp_path / "ours", tmp_path / "llmc"
    # llm-compressor's SmoothQuant statistic (the default is the paper's: kernels.smoothquant)
    extra = {**CALIB.extra, "smoothquant_statistic": "range"}
    get_backend(backend).quantize(spec, plan, ours, replace(CALIB, extra=extra))
    tokens = calibration_windows(model_dir, CALIB) if backend == "smoothquant" else None
    layers = plan_job(spec, plan).layers if backend == "rtn" else ()  # others: their preset
    llmc.run(model_dir, theirs, _recipe(backend), layers, tokens, CALIB)

    cfg_o, cfg_t = (json.loads((d / "config.json").read_text())["quantization_config"]
                    for d in (ours, theirs))
    assert _groups(cfg_o) == _groups(cfg_t) and cfg_o["format"] == cfg_t["format"]
    bits = _groups(cfg_o)[0]["weights"]["num_bits"]
    a, b = _tensors(ours), _tensors(theirs)
    linears = sorted(k[:-len(".weight_scale")] for k in a if k.endswith("_proj.weight_scale"))
    assert len(linears) == 7 * spec.n_layers and set(a) == set(b)
    same = total = 0
    for name in linears:
        torch.testing.assert_close(a[f"{name}.weight_scale"].float(),
                                   b[f"{name}.weight_scale"].float(), rtol=1e-3, atol=0)
        ca, cb = _codes(a, name, bits), _codes(b, name, bits)
        if backend != "fp8":  # integers: at most one step apart
            assert int((ca - cb).abs().max()) <= 1, name
        same += int((ca == cb).sum())
        total += ca.numel()
    assert same / total > 0.98, f"{same / total:.4f} of the codes agree"
    for k in a:  # norms (smoothed ones too) and embeddings: the same float16 values
        if k.endswith("norm.weight") or "embed_tokens" in k:
            torch.testing.assert_close(a[k].float(), b[k].float(), rtol=2e-3, atol=0)
