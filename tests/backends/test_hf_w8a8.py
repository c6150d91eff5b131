"""fp8 (W8A8-FP8) and smoothquant (W8A8-INT8) on a tiny Llama built from config, through the real
`advisor quantize` command: the stored tensors and quantization_config are what compressed-tensors
and vLLM expect, plain transformers loads them and applies the dynamic per-token activation
quantization in its forward pass (by the expected amount), the written size is advisor.formats'
prediction, and the targets gate as vLLM's kernels require."""

from __future__ import annotations

import contextlib
import io
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from advisor.errors import BadInput
from advisor.estimate import weight_bytes
from advisor.inspect import inspect_model
from advisor.modelspec import ModelSpec
from advisor.plan import QuantPlan
from advisor.probe.catalogue import load_target
from advisor.space.named import plan_for_format
from backends import get_backend
from backends.base import QuantizeOptions
from backends.hf.base import plan_job
from kernels import fp8
from kernels import smoothquant as sq
from tests.backends.hf_tiny import embedded_tokenizer_dir, tiny_with_tokenizer

BACKENDS = ("fp8", "smoothquant")
PROJ = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
        "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ModelSpec, torch.nn.Module]:
    root = tmp_path_factory.mktemp("tiny-w8a8")
    model_dir, model = tiny_with_tokenizer(root, embedded_tokenizer_dir())
    return model_dir, inspect_model(str(model_dir)), model


def _cli(*args: str) -> tuple[int, str]:
    from advisor.cli.main import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(list(args))
    return rc, buf.getvalue()


@pytest.fixture(scope="module")
def artifacts(tiny: tuple, tmp_path_factory: pytest.TempPathFactory
              ) -> dict[str, tuple[Path, dict[str, Any]]]:
    """Each backend through `advisor quantize --backend B --bits 8` (target L40S, sm_89)."""
    model_dir, _, _ = tiny
    root = tmp_path_factory.mktemp("w8a8-artifacts")
    out = {}
    for name in BACKENDS:
        rc, text = _cli("quantize", "--model", str(model_dir), "--backend", name, "--bits", "8",
                        "--target", "l40s", "--threads", "2", "--out", str(root / name),
                        "--json")
        assert rc == 0, text
        out[name] = (root / name, json.loads(text))
    return out


def _tensors(d: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    out: dict[str, torch.Tensor] = {}
    for f in sorted(d.glob("model-*.safetensors")):
        out.update(load_file(str(f)))
    return out


def _qcfg(d: Path) -> dict[str, Any]:
    cfg: dict[str, Any] = json.loads((d / "config.json").read_text())["quantization_config"]
    return cfg


def test_fp8_checkpoint_is_llm_compressor_fp8_dynamic(tiny: tuple, artifacts: dict) -> None:
    _, spec, model = tiny
    out, report = artifacts["fp8"]
    assert report["backend"] == "fp8" and report["plan"]["options"]["format"] == "float-quantized"
    cfg = _qcfg(out)
    assert cfg["format"] == "float-quantized" and cfg["ignore"] == ["lm_head"]
    (group,) = cfg["config_groups"].values()
    assert group["targets"] == ["Linear"] and group["format"] == "float-quantized"
    assert {k: group["weights"][k] for k in ("num_bits", "type", "strategy", "symmetric",
                                             "dynamic")} == \
        {"num_bits": 8, "type": "float", "strategy": "channel", "symmetric": True,
         "dynamic": False}
    assert {k: group["input_activations"][k] for k in ("num_bits", "type", "strategy",
                                                       "symmetric", "dynamic")} == \
        {"num_bits": 8, "type": "float", "strategy": "token", "symmetric": True, "dynamic": True}
    stored = _tensors(out)
    src = dict(model.named_parameters())
    for i in range(spec.n_layers):
        for p in PROJ:
            name = f"model.layers.{i}.{p}"
            w, s = stored[f"{name}.weight"], stored[f"{name}.weight_scale"]
            assert w.dtype == torch.float8_e4m3fn and s.dtype == torch.float32
            assert s.shape == (w.shape[0], 1)
            assert f"{name}.weight_zero_point" not in stored and f"{name}.input_scale" \
                not in stored
            q, scale = fp8.quantize_weight(src[f"{name}.weight"].detach())
            # the same E4M3 values (the compressor adds its zero point: -0 is stored as +0)
            assert torch.equal(w.float(), q.float())
            assert torch.equal(s, scale)
    # embeddings and norms: float16 copies of the source
    emb = "model.embed_tokens.weight"
    assert torch.equal(stored[emb], src[emb].detach().half())


def test_smoothquant_checkpoint_is_int_quantized_and_smoothed(tiny: tuple,
                                                              artifacts: dict) -> None:
    _, spec, model = tiny
    out, report = artifacts["smoothquant"]
    opts = report["plan"]["options"]
    assert opts["format"] == "int-quantized" and opts["alpha"] == 0.5
    assert opts["calibration"]["windows"] > 0
    cfg = _qcfg(out)
    (group,) = cfg["config_groups"].values()
    assert cfg["format"] == group["format"] == "int-quantized"
    assert {k: group["weights"][k] for k in ("num_bits", "type", "strategy", "symmetric")} == \
        {"num_bits": 8, "type": "int", "strategy": "channel", "symmetric": True}
    assert {k: group["input_activations"][k] for k in ("num_bits", "type", "strategy",
                                                       "symmetric", "dynamic")} == \
        {"num_bits": 8, "type": "int", "strategy": "token", "symmetric": True, "dynamic": True}
    stored = _tensors(out)
    src = {k: v.detach() for k, v in model.named_parameters()}
    for i in range(spec.n_layers):
        pre = f"model.layers.{i}"
        for p in PROJ:
            w, s = stored[f"{pre}.{p}.weight"], stored[f"{pre}.{p}.weight_scale"]
            assert w.dtype == torch.int8 and s.dtype == torch.float16
            assert s.shape == (w.shape[0], 1)
            assert f"{pre}.{p}.weight_zero_point" not in stored
            # symmetric per channel, scale = absmax / 127.5: each row's largest weight lands
            # on 127 or -128 (127.5 rounds half to even)
            assert set(w.to(torch.int16).abs().amax(dim=1).tolist()) <= {127, 128}
        # smoothing moved factors from the norms into q/k/v and gate/up: norm * W is kept
        for norm, paths in (("input_layernorm", PROJ[:3]), ("post_attention_layernorm",
                                                           PROJ[4:6])):
            g_new = stored[f"{pre}.{norm}.weight"].float()
            g_old = src[f"{pre}.{norm}.weight"]
            assert not torch.allclose(g_new, g_old.half().float())
            for p in paths:
                new = (stored[f"{pre}.{p}.weight"].float() * stored[f"{pre}.{p}.weight_scale"]
                       .float()) * g_new
                old = src[f"{pre}.{p}.weight"] * g_old
                err = (new - old).norm() / old.norm()
                assert err < 0.02, (pre, p, float(err))
        # o_proj and down_proj are not smoothed: plain int8 of the source weights
        for p in ("self_attn.o_proj", "mlp.down_proj"):
            q, _ = sq.quantize_weight(src[f"{pre}.{p}.weight"])
            assert torch.equal(stored[f"{pre}.{p}.weight"], q)


def _tokens(model_dir: Path) -> torch.Tensor:
    from backends.hf.base import calibration_windows

    return calibration_windows(model_dir, QuantizeOptions(extra={"calib_windows": 1}))[:, :128]


def _float_logits(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    import transformers

    with torch.no_grad():
        m = transformers.AutoModelForCausalLM.from_config(model.config, dtype=torch.float32)
        m.load_state_dict({k: v.half().float() for k, v in model.state_dict().items()})
        return m.eval()(ids).logits[0]


def _act_quant(model: torch.nn.Module, on: bool) -> int:
    """Switch compressed-tensors' quantized forward (its input QDQ; the weights are already
    decompressed) on or off; returns the number of modules switched."""
    n = 0
    for m in model.modules():
        if getattr(m, "quantization_scheme", None) is not None:
            setattr(m, "quantization_enabled", on)  # read by compressed-tensors' forward
            n += 1
    return n


def _with_hooks(model: torch.nn.Module, fq: Callable[[torch.Tensor], torch.Tensor],
                ids: torch.Tensor) -> torch.Tensor:
    """Logits of the weight-only model with `fq` applied to every quantized linear's input."""
    handles = [m.register_forward_pre_hook(lambda _m, a: (fq(a[0]),))
               for m in model.modules()
               if getattr(m, "quantization_scheme", None) is not None]
    try:
        with torch.no_grad():
            return model(ids).logits[0]
    finally:
        for h in handles:
            h.remove()


# compressed-tensors' dynamic token fake-quant, as kernels compute it: FP8 is vLLM's rule too;
# INT8 divides by 127.5 where vLLM divides by 127 (compared below)
CT_RULE: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "fp8": fp8.fake_quantize_tokens,
    "smoothquant": lambda x: sq.fake_quantize_tokens(x, sq.CT_TOKEN_QMAX),
}
VLLM_RULE: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "fp8": fp8.fake_quantize_tokens, "smoothquant": sq.fake_quantize_tokens,
}


@pytest.mark.parametrize("name", BACKENDS)
def test_transformers_applies_activation_quantization_on_cpu(name: str, tiny: tuple,
                                                             artifacts: dict) -> None:
    """The measuring runner (plain from_pretrained) quantizes every linear's input per token:
    its logits are the weight-only logits moved by exactly the kernels' fake quantization."""
    model_dir, _, model = tiny
    out, _ = artifacts[name]
    runner = get_backend(name).load(out, threads=2)
    try:
        ids = _tokens(model_dir)
        loaded = torch.from_numpy(runner.logits(ids[0].tolist()))
        m = runner.model  # type: ignore[attr-defined]
        assert _act_quant(m, False) == 14  # 7 linears x 2 layers; the LM head is ignored
        with torch.no_grad():
            weight_only = m(ids).logits[0]
        simulated = _with_hooks(m, CT_RULE[name], ids)
        vllm = _with_hooks(m, VLLM_RULE[name], ids)
        _act_quant(m, True)
    finally:
        runner.close()
    moved = float((loaded - weight_only).abs().max())
    assert moved > 1e-3, moved  # activation quantization is there ...
    torch.testing.assert_close(loaded, simulated, rtol=0, atol=1e-4)  # ... and it is this one
    # vLLM's int8 rule (absmax / 127) rounds other values than compressed-tensors' (/ 127.5),
    # but it is a perturbation of the same size (for FP8 the two rules are one)
    ratio = float((vllm - weight_only).norm() / (loaded - weight_only).norm())
    assert 0.7 < ratio < 1.4, ratio
    # and the whole W8A8 model stays close to float
    ref = _float_logits(model, ids)
    rel = float((loaded - ref).norm() / (ref - ref.mean()).norm())
    assert rel < 0.1, rel
    assert float((loaded.argmax(-1) == ref.argmax(-1)).float().mean()) > 0.8


@pytest.mark.parametrize("name", BACKENDS)
def test_written_size_is_the_predicted_size(name: str, tiny: tuple, artifacts: dict) -> None:
    _, spec, _ = tiny
    out, report = artifacts[name]
    written = QuantPlan.from_dict(report["plan"])
    predicted = sum(weight_bytes(spec, written).values())
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert index["metadata"]["total_size"] == predicted
    assert report["estimate"]["file_size"]["value"] >= predicted


@pytest.mark.parametrize("name,target,ok,why", [
    ("fp8", "rtx3090", False, "sm_89"), ("fp8", "a10g", False, "sm_89"),
    ("fp8", "l40s", True, "served"), ("fp8", "h100-sxm", True, "served"),
    ("smoothquant", "rtx3090", True, "served"), ("smoothquant", "l40s", True, "served"),
    ("fp8", "x86-server", False, "GPU"), ("smoothquant", "m3-max", False, "Apple"),
])
def test_hardware_gating(name: str, target: str, ok: bool, why: str) -> None:
    s = get_backend(name).serves_on(load_target(target))
    assert s.ok is ok and why in s.reason
    assert ("W8A8-FP8" if name == "fp8" else "W8A8-INT8") in s.reason  # its own scheme


def test_report_gates_on_the_cli_target(artifacts: dict) -> None:
    for name in BACKENDS:
        served = artifacts[name][1]["serves_on_target"]
        assert served["ok"] and "L40S" in served["reason"].upper()


def test_plans_each_backend_writes(tiny: tuple) -> None:
    _, spec, _ = tiny
    fp8_plan = plan_for_format(spec, "fp8", backend="fp8")
    with pytest.raises(BadInput, match="does not write it"):
        plan_job(spec, QuantPlan("rtn", fp8_plan.tensor_formats))
    with pytest.raises(BadInput, match="W8A8-FP8"):
        plan_job(spec, QuantPlan("smoothquant", fp8_plan.tensor_formats), ("W8A8-INT8",))
    int8 = plan_for_format(spec, "w8a8", backend="smoothquant")
    with pytest.raises(BadInput, match="symmetric"):
        plan_job(spec, QuantPlan("smoothquant", int8.tensor_formats, {"symmetric": False}),
                 ("W8A8-INT8",))
    with pytest.raises(BadInput, match="fp8 backend a W8A8-FP8 plan"):
        get_backend("fp8").quantize(spec, int8, Path("/nonexistent"), QuantizeOptions())
    from advisor.realize import resolve_plan

    p = resolve_plan(spec, None, None, False, 128, backend="smoothquant", bits=8)
    assert p.backend == "smoothquant" and set(p.tensor_formats.values()) == {"W8A8-INT8", "F16"}


@pytest.mark.parametrize("extra", [{"smoothquant_alpha": 2},
                                   {"smoothquant_statistic": "mean"}])
def test_smoothquant_options_are_checked(extra: dict, tiny: tuple, tmp_path: Path) -> None:
    _, spec, _ = tiny
    plan = plan_for_format(spec, "w8a8", backend="smoothquant")
    with pytest.raises(BadInput, match=next(iter(extra))):
        get_backend("smoothquant").quantize(spec, plan, tmp_path / "x",
                                            QuantizeOptions(extra=extra))
    assert not (tmp_path / "x").exists()


def test_fp8_mixed_plan_keeps_a_layer_float(tiny: tuple, tmp_path: Path) -> None:
    """Layer 1 left in float: targets by exact name, layer 1's linears in `ignore`, and the
    float layer has no activation quantization when loaded."""
    model_dir, spec, model = tiny
    plan = plan_for_format(spec, "fp8", backend="fp8")
    fmts = {k: ("F16" if k.startswith("blk.1.") and v == "W8A8-FP8" else v)
            for k, v in plan.tensor_formats.items()}
    get_backend("fp8").quantize(spec, QuantPlan("fp8", fmts), tmp_path / "mixed",
                                QuantizeOptions(threads=2))
    cfg = _qcfg(tmp_path / "mixed")
    (group,) = cfg["config_groups"].values()
    assert group["targets"] == [f"re:^{re.escape(f'model.layers.0.{p}')}$"
                                for p in sorted(PROJ)]
    assert "model.layers.1.mlp.down_proj" in cfg["ignore"]
    runner = get_backend("fp8").load(tmp_path / "mixed", threads=2)
    try:
        m = runner.model  # type: ignore[attr-defined]
        runner.logits(_tokens(model_dir)[0, :8].tolist())  # decompresses
        assert _act_quant(m, True) == 7
        w = dict(m.named_parameters())["model.layers.1.mlp.down_proj.weight"]
        src = dict(model.named_parameters())["model.layers.1.mlp.down_proj.weight"]
        assert torch.equal(w.detach(), src.detach().half().float())
    finally:
        runner.close()
