"""nf4 on a tiny model built from config, through the real `advisor quantize --backend nf4`: the
checkpoint is byte for byte the one transformers writes when it quantizes the same model with
bitsandbytes itself; it reloads with plain transformers and runs the kernel's NF4 values; its size
is the one advisor.formats predicts; plans, float linears, hardware gating."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import torch

from advisor import formats
from advisor.artifact.serving import Serving
from advisor.errors import BadInput
from advisor.inspect import inspect_model
from advisor.modelspec import ModelSpec
from advisor.plan import QuantPlan
from advisor.probe.catalogue import load_target
from advisor.space.named import plan_for_format
from backends import get_backend
from backends.base import QuantizeOptions
from backends.hf.runner import HfRunner
from backends.nf4 import plan_job
from kernels.nf4 import fake_quantize_nf4
from tests.backends.hf_tiny import embedded_tokenizer_dir, tiny_with_tokenizer

pytest.importorskip("bitsandbytes", reason="bitsandbytes not installed")
OPTS = QuantizeOptions(threads=2)
NF4_SUFFIXES = ("absmax", "quant_map", "nested_absmax", "nested_quant_map",
                "quant_state.bitsandbytes__nf4")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ModelSpec, torch.nn.Module]:
    # the embedded model's tokenizer (~20 s once per session): the runner tokenizes
    root = tmp_path_factory.mktemp("tiny")
    model_dir, model = tiny_with_tokenizer(root, embedded_tokenizer_dir())
    return model_dir, inspect_model(str(model_dir)), model


@pytest.fixture(scope="module")
def artifact(tiny: tuple, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """`advisor quantize --backend nf4` on the tiny model: (artifact dir, report)."""
    from advisor.cli.main import main

    model_dir, _, _ = tiny
    out = tmp_path_factory.mktemp("nf4") / "artifact"
    rc = main(["--quiet", "quantize", "--model", str(model_dir), "--backend", "nf4",
               "--out", str(out), "--target", "x86-server", "--threads", "2"])
    assert rc == 0
    return out, json.loads((out / "report.json").read_text())


def _tensors(d: Path) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    out: dict[str, torch.Tensor] = {}
    for f in sorted(d.glob("*.safetensors")):
        with safe_open(str(f), "pt") as sf:
            out.update({k: sf.get_tensor(k) for k in sf.keys()})
    return out


def _transformers_own(model_dir: Path, out: Path) -> Path:
    """The tiny model quantized by transformers + bitsandbytes at load time, then saved."""
    import transformers

    bnb = transformers.BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                          bnb_4bit_use_double_quant=True,
                                          bnb_4bit_compute_dtype=torch.float16)
    m = transformers.AutoModelForCausalLM.from_pretrained(
        str(model_dir), quantization_config=bnb, dtype=torch.float16, device_map="cpu")
    m.save_pretrained(str(out))
    return out


def test_cli_writes_the_checkpoint_transformers_writes(tiny: tuple, artifact: tuple,
                                                       tmp_path: Path) -> None:
    model_dir, spec, _ = tiny
    out, report = artifact
    assert report["backend"] == "nf4" and report["label"] == "NF4"
    opts = report["plan"]["options"]
    assert opts["format"] == "bitsandbytes-nf4" and opts["double_quant"] is True
    assert opts["peak_memory"]["origin"] == "measured" and opts["quantize_seconds"] > 0
    # one shard per decoder layer plus the rest: the layers were streamed
    assert len(list(out.glob("model-*.safetensors"))) == spec.n_layers + 1
    assert "--quantization bitsandbytes" in (out / "serve.sh").read_text()

    ref = _transformers_own(model_dir, tmp_path / "transformers")
    mine, theirs = _tensors(out), _tensors(ref)
    assert set(mine) == set(theirs)
    for name, t in theirs.items():
        assert mine[name].dtype == t.dtype and mine[name].shape == t.shape, name
        assert torch.equal(mine[name], t), name
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["quantization_config"] == \
        json.loads((ref / "config.json").read_text())["quantization_config"]
    assert cfg["dtype"] == "float16"


def test_qwen2_biases_match_transformers(tmp_path: Path) -> None:
    """Linears with biases (Qwen2's q/k/v): the biases stay float16 beside the NF4 state."""
    from tests.conftest import tiny_hf_model

    model_dir, _ = tiny_hf_model(tmp_path, arch="qwen2", hidden_size=64, intermediate_size=96)
    spec = inspect_model(str(model_dir))
    out = tmp_path / "nf4"
    get_backend("nf4").quantize(spec, plan_for_format(spec, "NF4", backend="nf4"), out, OPTS)
    mine, theirs = _tensors(out), _tensors(_transformers_own(model_dir, tmp_path / "ref"))
    assert "model.layers.0.self_attn.q_proj.bias" in mine and set(mine) == set(theirs)
    assert all(torch.equal(mine[k], t) and mine[k].dtype == t.dtype for k, t in theirs.items())


def test_reload_runs_the_kernels_nf4_values(tiny: tuple, artifact: tuple) -> None:
    """`advisor eval` loads through backend.load: bitsandbytes' Linear4bit on the CPU, computing
    in float32 with exactly the kernel's dequantized weights."""
    import bitsandbytes as bnb
    import transformers

    model_dir, _, _ = tiny
    out, _ = artifact
    runner = get_backend("nf4").load(out, threads=2)
    try:
        assert isinstance(runner, HfRunner)
        q = runner.model
        assert isinstance(q.get_submodule("model.layers.0.mlp.down_proj"), bnb.nn.Linear4bit)
        assert not isinstance(q.get_submodule("lm_head"), bnb.nn.Linear4bit)
        assert all(p.dtype in (torch.float32, torch.uint8) for p in q.parameters())
        # the float model with every decoder linear replaced by the kernel's NF4 values and the
        # other weights rounded to the checkpoint's float16
        ref = transformers.AutoModelForCausalLM.from_pretrained(str(model_dir),
                                                                dtype=torch.float32)
        ref.eval()
        with torch.no_grad():
            for name, p in ref.named_parameters():
                p.copy_(fake_quantize_nf4(p.half()) if name.endswith("_proj.weight")
                        else p.half().float())
        toks = runner.tokenize("The river valley was quiet in the early morning")
        logits = runner.logits(toks)
        with torch.no_grad():
            want = ref(torch.tensor([toks])).logits[0].numpy()
        assert logits.dtype.name == "float32"
        assert abs(logits - want).max() < 1e-4
        new, times = runner.generate(toks, 3)
        assert new[0] == int(logits[-1].argmax()) and len(times) == 3
    finally:
        runner.close()


def test_written_size_is_the_predicted_size(tiny: tuple, artifact: tuple) -> None:
    """advisor.formats.schemes models NF4 without the packed JSON state (~170 bytes a linear)."""
    _, spec, _ = tiny
    out, _ = artifact
    written = _tensors(out)
    hf_names = {t.canonical: t for t in spec.tensors}
    quantized = 0
    for t in hf_names.values():
        if t.role.value.startswith(("attn_", "mlp_")):
            name = _hf_name(t.layer, t.role.value)
            parts = [written[name]] + [written[f"{name}.{s}"] for s in NF4_SUFFIXES]
            got = sum(p.numel() * p.element_size() for p in parts)
            blob = written[f"{name}.quant_state.bitsandbytes__nf4"].numel()
            predicted = formats.tensor_bytes("NF4", t.shape)
            assert got - blob == predicted and 100 < blob < 250, (name, got, predicted)
            quantized += 1
    assert quantized == 7 * spec.n_layers


def _hf_name(layer: int | None, role: str) -> str:
    from advisor.modelspec import Role
    from backends.hf.base import LAYER_MODULES

    return f"model.layers.{layer}.{LAYER_MODULES[Role(role)]}.weight"


def test_float_linears_are_skipped_modules(tiny: tuple, tmp_path: Path) -> None:
    """Layer 1 kept in F16: listed in llm_int8_skip_modules (with the LM head and vLLM's fused
    names); transformers loads those as plain float Linear."""
    import bitsandbytes as bnb

    _, spec, model = tiny
    plan = plan_for_format(spec, "NF4", backend="nf4")
    fmts = {k: ("F16" if k.startswith("blk.1.") else v) for k, v in plan.tensor_formats.items()}
    out = tmp_path / "mixed"
    get_backend("nf4").quantize(spec, QuantPlan("nf4", fmts, label="mixed"), out, OPTS)
    skip = json.loads((out / "config.json").read_text())["quantization_config"][
        "llm_int8_skip_modules"]
    assert skip[0] == "lm_head" and "model.layers.1.self_attn.qkv_proj" in skip
    assert "model.layers.1.mlp.down_proj" in skip and not any(".layers.0." in s for s in skip)
    runner = get_backend("nf4").load(out, threads=2)
    try:
        assert isinstance(runner, HfRunner)
        q = runner.model
        assert isinstance(q.get_submodule("model.layers.0.self_attn.q_proj"), bnb.nn.Linear4bit)
        kept = q.get_submodule("model.layers.1.self_attn.q_proj")
        assert type(kept) is torch.nn.Linear
        src = model.get_submodule("model.layers.1.self_attn.q_proj").weight.detach()
        torch.testing.assert_close(kept.weight.detach(), src.half().float(), rtol=0, atol=0)
    finally:
        runner.close()


def test_plan_validation(tiny: tuple) -> None:
    _, spec, _ = tiny
    plan = plan_for_format(spec, "NF4", backend="nf4")
    assert plan_job(spec, plan).skip_modules() == []
    fmts = dict(plan.tensor_formats)
    fmts["blk.0.attn_k.weight"] = "F16"
    with pytest.raises(BadInput, match="q_proj, self_attn.k_proj, self_attn.v_proj"):
        plan_job(spec, QuantPlan("nf4", fmts))
    fmts = dict(plan.tensor_formats)
    fmts["blk.0.ffn_down.weight"] = "W4A16"
    with pytest.raises(BadInput, match="writes NF4 or keeps F16"):
        plan_job(spec, QuantPlan("nf4", fmts))
    fmts = dict(plan.tensor_formats)
    fmts["token_embd.weight"] = "NF4"
    with pytest.raises(BadInput, match="keep it F16"):
        plan_job(spec, QuantPlan("nf4", fmts))
    with pytest.raises(BadInput, match="for backend 'rtn'"):
        get_backend("nf4").quantize(spec, plan_for_format(spec, "W4A16"), Path("unused"), OPTS)


def test_cli_plan_resolution(tiny: tuple) -> None:
    from advisor.realize import resolve_plan

    _, spec, _ = tiny
    p = resolve_plan(spec, None, None, False, 128, backend="nf4")
    assert p.backend == "nf4" and set(p.tensor_formats.values()) == {"NF4", "F16"}
    with pytest.raises(BadInput, match="does not write 8-bit"):
        resolve_plan(spec, None, None, False, 128, backend="nf4", bits=8)


@pytest.mark.parametrize("target,ok,why", [
    ("h100-sxm", True, "runs"), ("a10g", True, "runs"), ("x86-server", False, "GPU"),
    ("m3-max", False, "Apple"),
])
def test_hardware_gating(target: str, ok: bool, why: str) -> None:
    s = get_backend("nf4").serves_on(load_target(target))
    assert s.ok is ok and why in s.reason


def test_serve_files() -> None:
    plan = QuantPlan("nf4", {"blk.0.ffn_up.weight": "NF4"})
    files = get_backend("nf4").serve_files(Path("."), plan, load_target("h100-sxm"),
                                             Serving(4096, parallel=4))
    script = files["serve.sh"]
    assert "vllm serve" in script and "--quantization bitsandbytes" in script
    assert "--max-model-len 4096 --max-num-seqs 4" in script and '${PORT:-8000}' in script
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)
    compile(files["transformers_snippet.py"], "snippet", "exec")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_dequantizes_the_same_values(artifact: tuple) -> None:
    """On a GPU, bitsandbytes' CUDA kernels read the checkpoint to the same float32 weights the
    CPU kernel gives (the serving path: transformers or vLLM on CUDA)."""
    import bitsandbytes.functional as bnb_f
    import transformers

    out, _ = artifact
    m = transformers.AutoModelForCausalLM.from_pretrained(str(out), device_map="cuda")
    weight: Any = m.get_submodule("model.layers.0.mlp.down_proj").weight
    state = weight.quant_state
    gpu = bnb_f.dequantize_4bit(weight.data, state).float().cpu()
    cpu_state = copy.deepcopy(state)
    cpu_state.to("cpu")
    cpu = bnb_f.dequantize_4bit(weight.data.cpu(), cpu_state).float()
    torch.testing.assert_close(gpu, cpu, rtol=0, atol=0)
