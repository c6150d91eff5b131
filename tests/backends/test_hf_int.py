"""rtn / gptq / awq on tiny models built from config: the compressed-tensors checkpoint loads with
plain transformers and holds exactly the kernels' integers; plans, fused layers, mixed precision,
layer streaming, hardware gating, the CLI's plan resolution."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from advisor.errors import BadInput
from advisor.inspect import inspect_model
from advisor.modelspec import ModelSpec
from advisor.plan import QuantPlan
from advisor.probe.catalogue import load_target
from advisor.space.named import plan_for_format
from backends import get_backend
from backends.base import QuantizeOptions
from backends.hf.base import plan_job
from kernels.affine import IntSpec, fake_quantize
from tests.backends.hf_tiny import embedded_tokenizer_dir, tiny_with_tokenizer

CALIB = QuantizeOptions(threads=2, extra={"calib_windows": 2})


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ModelSpec, torch.nn.Module]:
    root = tmp_path_factory.mktemp("tiny")
    model_dir, model = tiny_with_tokenizer(root, embedded_tokenizer_dir())
    return model_dir, inspect_model(str(model_dir)), model


def _plan(spec: ModelSpec, backend: str, fmt: str = "W4A16", group: int = 64) -> QuantPlan:
    return plan_for_format(spec, fmt, group_size=group, backend=backend)


def _load(d: Path) -> torch.nn.Module:
    import transformers

    m = transformers.AutoModelForCausalLM.from_pretrained(str(d), dtype=torch.float32)
    m.eval()
    with torch.no_grad():  # compressed-tensors decompresses on the first forward
        m(torch.zeros(1, 1, dtype=torch.long))
    return m


def _calib_tokens(model_dir: Path) -> torch.Tensor:
    from backends.hf.base import calibration_windows

    return calibration_windows(model_dir, CALIB)


def _logit_mse(a: torch.nn.Module, b: torch.nn.Module, ids: torch.Tensor) -> float:
    with torch.no_grad():
        return float(((a(ids).logits - b(ids).logits) ** 2).mean())


def test_rtn_checkpoint_is_the_kernels_integers(tiny: tuple, tmp_path: Path) -> None:
    model_dir, spec, model = tiny
    out = tmp_path / "rtn"
    written = get_backend("rtn").quantize(spec, _plan(spec, "rtn"), out, CALIB)
    assert written.backend == "rtn" and written.options["format"] == "pack-quantized"
    assert written.options["peak_memory"]["origin"] == "measured"
    cfg = json.loads((out / "config.json").read_text())["quantization_config"]
    assert cfg["quant_method"] == "compressed-tensors" and cfg["format"] == "pack-quantized"
    assert cfg["ignore"] == ["lm_head"]
    (group,) = cfg["config_groups"].values()
    assert group["weights"] == {**group["weights"], "num_bits": 4, "group_size": 64,
                                "strategy": "group", "symmetric": True}
    # one shard per decoder layer plus the rest: the layers were streamed
    assert len(list(out.glob("model-*.safetensors"))) == spec.n_layers + 1
    loaded = _load(out)
    src = dict(model.named_parameters())
    for name, p in loaded.named_parameters():
        if name not in src:
            kept = ("weight_scale", "weight_zero_point", "weight_shape")
            assert name.rsplit(".", 1)[1] in kept, name
            continue
        ref = src[name].detach()
        if name.endswith("_proj.weight"):
            expect = fake_quantize(ref, IntSpec(4, 64))  # from the float32 source weights
            torch.testing.assert_close(p.detach(), expect, rtol=0, atol=0)
        else:  # embeddings, norms: unquantized (float16 storage)
            torch.testing.assert_close(p.detach(), ref.half().float(), rtol=0, atol=0)


@pytest.mark.parametrize("backend", ["gptq", "awq", "autoround"])
def test_calibrated_backends_beat_rtn_on_calibration_text(backend: str, tiny: tuple,
                                                          tmp_path: Path) -> None:
    model_dir, spec, model = tiny
    rtn = _load(_quantized(spec, "rtn", tmp_path))
    other = _load(_quantized(spec, backend, tmp_path))
    ids = _calib_tokens(model_dir)[:1, :256]
    ref = _load(model_dir)  # the float model as transformers reads it
    assert _logit_mse(other, ref, ids) < _logit_mse(rtn, ref, ids)


def _quantized(spec: ModelSpec, backend: str, tmp_path: Path) -> Path:
    out = tmp_path / backend
    get_backend(backend).quantize(spec, _plan(spec, backend), out, CALIB)
    return out


def test_mixed_plan_and_group_fallback(tiny: tuple, tmp_path: Path) -> None:
    """Layer 0 at W8A16, layer 1 in float; a group that does not divide a row falls back to the
    largest group size that does and the plan says so."""
    model_dir, spec, model = tiny
    fmts = {}
    for t in spec.tensors:
        linear = t.role.value.startswith(("attn_", "mlp_"))
        fmts[t.canonical] = ("W8A16" if t.layer == 0 else "F16") if linear else "F16"
    plan = QuantPlan("rtn", fmts, options={"group_size": 256}, label="mixed")
    written = get_backend("rtn").quantize(spec, plan, tmp_path / "mixed", CALIB)
    # hidden 128: every linear but the down projection (in 256) is written in groups of 128
    assert written.options["fallbacks"] == {"blk.0.attn_q.weight": 128,
                                            "blk.0.attn_k.weight": 128,
                                            "blk.0.attn_v.weight": 128,
                                            "blk.0.attn_output.weight": 128,
                                            "blk.0.ffn_gate.weight": 128,
                                            "blk.0.ffn_up.weight": 128}
    cfg = json.loads((tmp_path / "mixed" / "config.json").read_text())["quantization_config"]
    assert len(cfg["config_groups"]) == 2
    assert "model.layers.1.self_attn.q_proj" in cfg["ignore"]
    loaded = dict(_load(tmp_path / "mixed").named_parameters())
    src = dict(model.named_parameters())
    w1 = "model.layers.1.mlp.down_proj.weight"
    torch.testing.assert_close(loaded[w1].detach(), src[w1].detach().half().float(), rtol=0,
                               atol=0)
    w0 = "model.layers.0.mlp.down_proj.weight"
    torch.testing.assert_close(loaded[w0].detach(),
                               fake_quantize(src[w0].detach(), IntSpec(8, 256)),
                               rtol=0, atol=0)


def test_gptq_mixed_plan_ties_fused_groups_and_parses_in_compressed_tensors(
        tiny: tuple, tmp_path: Path) -> None:
    """A mixed plan through llm-compressor's GPTQ: layer 0 at W8A16, layer 1's attention at
    W4A16 and its MLP in float. Each fused group (q/k/v, gate/up) lands in one config group,
    the float linears are ignored, compressed-tensors' own loader parses the config, and plain
    transformers loads the checkpoint."""
    from compressed_tensors.compressors import ModelCompressor
    from transformers.utils.quantization_config import CompressedTensorsConfig

    model_dir, spec, _ = tiny
    fmts = {}
    for t in spec.tensors:
        if not t.role.value.startswith(("attn_", "mlp_")):
            fmts[t.canonical] = "F16"
        elif t.layer == 0:
            fmts[t.canonical] = "W8A16"
        else:
            fmts[t.canonical] = "W4A16" if t.role.value.startswith("attn_") else "F16"
    out = tmp_path / "mixed-gptq"
    written = get_backend("gptq").quantize(spec, QuantPlan("gptq", fmts, {"group_size": 64}),
                                           out, CALIB)
    assert written.options["quantizer"].startswith("llm-compressor")
    cfg = json.loads((out / "config.json").read_text())["quantization_config"]
    group_of = {}
    for name, g in cfg["config_groups"].items():
        for target in g["targets"]:
            group_of[target.removeprefix("re:^").removesuffix("$").replace("\\", "")] = name
    bits = {name: g["weights"]["num_bits"] for name, g in cfg["config_groups"].items()}
    for fused in (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj")):
        part = "self_attn" if fused[0] == "q_proj" else "mlp"
        assert len({group_of[f"model.layers.0.{part}.{m}"] for m in fused}) == 1
    assert bits[group_of["model.layers.0.self_attn.q_proj"]] == 8
    assert bits[group_of["model.layers.1.self_attn.v_proj"]] == 4
    assert {"model.layers.1.mlp.gate_proj", "model.layers.1.mlp.up_proj",
            "model.layers.1.mlp.down_proj"} <= set(cfg["ignore"])
    # what transformers' loader does: its CompressedTensorsConfig, then compressed-tensors'
    # ModelCompressor (from_pretrained is gone from compressed-tensors 0.19 on)
    parsed = ModelCompressor.from_compression_config(CompressedTensorsConfig.from_dict(cfg))
    assert parsed is not None and parsed.quantization_config is not None
    assert len(parsed.quantization_config.config_groups) == len(cfg["config_groups"])
    loaded = _load(out)
    assert isinstance(loaded.model.layers[1].mlp.up_proj.weight, torch.nn.Parameter)


def test_gptq_cli_json_is_the_only_stdout(tiny: tuple, tmp_path: Path) -> None:
    """llm-compressor logs to stdout from its import on; `--json` must still print JSON only."""
    import subprocess
    import sys

    model_dir, _, _ = tiny
    r = subprocess.run([sys.executable, "-m", "advisor.cli", "quantize", "--model",
                        str(model_dir), "--backend", "gptq", "--bits", "4", "--group-size", "64",
                        "--out", str(tmp_path / "g"), "--json"], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads(r.stdout)
    assert rep["backend"] == "gptq"
    assert rep["plan"]["options"]["quantizer"].startswith("llm-compressor")


def test_fused_layers_share_one_precision(tiny: tuple) -> None:
    _, spec, _ = tiny
    plan = _plan(spec, "rtn")
    fmts = dict(plan.tensor_formats)
    fmts["blk.1.attn_k.weight"] = "W8A16"
    with pytest.raises(BadInput, match="q_proj, self_attn.k_proj, self_attn.v_proj"):
        plan_job(spec, QuantPlan("rtn", fmts, plan.options))
    fmts = dict(plan.tensor_formats)
    fmts["blk.0.ffn_up.weight"] = "F16"
    with pytest.raises(BadInput, match="gate_proj, mlp.up_proj"):
        plan_job(spec, QuantPlan("rtn", fmts, plan.options))
    fmts = dict(plan.tensor_formats)
    fmts["token_embd.weight"] = "W4A16"
    with pytest.raises(BadInput, match="keep it F16"):
        plan_job(spec, QuantPlan("rtn", fmts, plan.options))


def test_runner_logits_and_greedy(tiny: tuple, tmp_path: Path) -> None:
    _, spec, _ = tiny
    out = _quantized(spec, "rtn", tmp_path)
    runner = get_backend("rtn").load(out, threads=2)
    try:
        toks = runner.tokenize("The river valley was quiet")
        logits = runner.logits(toks)
        assert logits.shape == (len(toks), 49152) and logits.dtype.name == "float32"
        new, times = runner.generate(toks, 3)
        assert new[0] == int(logits[-1].argmax()) and len(times) == 3
    finally:
        runner.close()


@pytest.mark.parametrize("target,ok,why", [
    ("h100-sxm", True, "Marlin"), ("a10g", True, "Marlin"), ("x86-server", False, "GPU"),
    ("m3-max", False, "Apple"),
])
def test_hardware_gating(target: str, ok: bool, why: str) -> None:
    for name in ("rtn", "gptq", "awq"):
        s = get_backend(name).serves_on(load_target(target))
        assert s.ok is ok and why in s.reason


def test_cli_plan_resolution(tiny: tuple) -> None:
    from advisor.realize import resolve_plan

    _, spec, _ = tiny
    p = resolve_plan(spec, None, None, False, 64, backend="gptq", bits=8)
    assert p.backend == "gptq" and set(p.tensor_formats.values()) == {"W8A16", "F16"}
    assert p.options == {"group_size": 64}
    p = resolve_plan(spec, "int4", None, False, 128, backend="awq")
    assert p.backend == "awq" and "W4A16" in p.tensor_formats.values()
    with pytest.raises(BadInput, match="does not write 3-bit"):
        resolve_plan(spec, None, None, False, 128, backend="rtn", bits=3)
    with pytest.raises(BadInput, match="does not write W8A8-FP8"):
        resolve_plan(spec, "fp8", None, False, 128, backend="gptq")
