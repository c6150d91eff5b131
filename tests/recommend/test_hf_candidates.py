"""`recommend --backend`: which backends a target is offered, the HF int plan space and its
sensitivity, and a whole recommendation of HF checkpoints for a GPU target on a tiny model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from advisor.estimate import Workload, estimate
from advisor.inspect import inspect_model
from advisor.probe import get_hardware
from advisor.recommend.offers import backend_offers, hf_backends, offered
from advisor.space.hf_mix import HF_MENU, hf_plan_space
from advisor.space.named import plan_for_format
from tests.backends.hf_tiny import embedded_tokenizer_dir, tiny_with_tokenizer


def advisor(*args: str, env: dict[str, str] | None = None,
            timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "advisor.cli", *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def test_a_cpu_target_is_offered_gguf_only_with_the_reason_for_each_hf_backend() -> None:
    offers = {o.backend: o for o in backend_offers("auto", get_hardware("x86-server", None))}
    assert offered(list(offers.values())) == {"gguf"}
    for name in hf_backends():
        assert not offers[name].offered and "GPU" in offers[name].reason, offers[name]


def test_gpu_targets_are_gated_by_compute_capability() -> None:
    ada = offered(backend_offers("auto", get_hardware("rtx4090", None)))  # sm_89
    ampere = {o.backend: o for o in backend_offers("auto", get_hardware("a100-80g", None))}
    assert ada == {"gguf", *hf_backends()}
    assert not ampere["fp8"].offered and "sm_89" in ampere["fp8"].reason
    assert ampere["smoothquant"].offered and ampere["gptq"].offered


def test_a_named_backend_is_offered_alone() -> None:
    offers = {o.backend: o for o in backend_offers("rtn", get_hardware("rtx4090", None))}
    assert offered(list(offers.values())) == {"rtn"}
    assert "not requested" in offers["gguf"].reason


@pytest.mark.parametrize("args,code,words", [
    (("--backend", "tensorrt"), 2, "--backend"),
    (("--backend", "rtn"), 3, "GPU"),  # this host has no GPU: vLLM cannot serve here
])
def test_backend_errors_are_one_line(tmp_path: Path, args: tuple[str, ...], code: int,
                                     words: str) -> None:
    r = advisor("-q", "recommend", *args, "--out", str(tmp_path / "out"), timeout=120)
    assert r.returncode == code, r.stderr
    line = r.stderr.strip()
    assert len(line.splitlines()) == 1 and line.startswith("advisor: error:") and words in line
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hf-rec")
    model_dir, _ = tiny_with_tokenizer(root, embedded_tokenizer_dir(), num_hidden_layers=3)
    return model_dir


def test_the_hf_space_has_one_choice_per_fused_group(tiny: Path) -> None:
    from backends.hf.base import plan_job

    spec = inspect_model(str(tiny))
    space = hf_plan_space(spec, backend="gptq", group_size=64)
    assert len(space.free) == 4 * spec.n_layers
    assert all(set(t.types) == set(HF_MENU) for t in space.free)
    # a mixed assignment: every fused member takes its group's scheme, plan_job accepts it
    assignment = {t.name: HF_MENU[i % 3] for i, t in enumerate(space.free)}
    plan = space.plan(assignment)
    assert plan.backend == "gptq" and plan.options == {"group_size": 64}
    job = plan_job(spec, plan)
    assert len(job.layers) == spec.n_layers
    for t in space.free:
        assert {plan.tensor_formats[m] for m in space.members[t.name]} == {assignment[t.name]}
    # the space's bytes are the size model's bytes of the plan's tensors
    from advisor.estimate import weight_bytes

    assert space.size(assignment) == sum(weight_bytes(spec, plan).values())


def test_hf_sensitivity_orders_the_schemes_and_is_cached(tiny: Path, tmp_path: Path) -> None:
    from advisor.sensitivity.hf_mix import hf_sensitivity_table
    from advisor.textdata import default_calibration_text
    from backends.gguf import f16_reference

    spec = inspect_model(str(tiny))
    gguf = f16_reference(spec)
    space = hf_plan_space(spec)
    text = default_calibration_text()
    table = hf_sensitivity_table(gguf, space, text, cache_dir=tmp_path)
    for t in space.free:
        c = table.costs[t.name]
        assert c["W4A16"] > c["W8A16"] > 0 == c["F16"], (t.name, c)
    again = hf_sensitivity_table(gguf, space, text, cache_dir=tmp_path)
    assert again.costs == table.costs and again.space is space


def _sizes(spec: Any, scheme: str) -> int:
    plan = plan_for_format(spec, scheme, backend="rtn")
    return int(estimate(spec, plan, get_hardware("rtx4090", None), Workload()).file_size.value)


def test_recommend_for_a_gpu_target_picks_a_measured_hf_checkpoint(tiny: Path,
                                                                   tmp_path: Path) -> None:
    spec = inspect_model(str(tiny))
    w4, w8 = _sizes(spec, "W4A16"), _sizes(spec, "W8A16")
    budget = (w4 + w8) // 2  # uniform W4A16 fits, W8A16 does not: the search mixes them
    out = tmp_path / "pick"
    r = advisor("recommend", "--model", str(tiny), "--target", "rtx4090", "--backend", "rtn",
                "--max-size", str(budget), "--trials", "6", "--candidates", "2",
                "--eval-windows", "1", "--out", str(out), "--json",
                env={"QUANT_ADVISOR_CACHE": str(tmp_path / "cache")})
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    kinds = {c["label"]: c["kind"] for c in rep["candidates"]}
    assert set(kinds.values()) == {"checkpoint", "checkpoint-search"}, kinds
    assert "W4A16-g128" in kinds and not any("W8A16" == k for k in kinds)
    for c in rep["candidates"]:
        assert c["size_measured"] <= budget and c["kl_measured"] > 0
        # vLLM does not run here: memory and p95 are the target's predictions, said so
        assert c["memory"]["origin"] == c["p95"]["origin"] == "predicted"
    pick = next(c for c in rep["candidates"] if c["label"] == rep["pick"]["label"])
    assert pick["kl_measured"] == min(c["kl_measured"] for c in rep["candidates"])
    mixes = [c for c in rep["candidates"] if c["kind"] == "checkpoint-search"]
    assert all(c["kl_measured"] < next(d["kl_measured"] for d in rep["candidates"]
                                       if d["label"] == "W4A16-g128") for c in mixes)
    offers = {o["backend"]: o for o in rep["backends"]}
    assert offers["rtn"]["offered"] and not offers["gguf"]["offered"]
    assert {"hf sensitivity", "hf search"} <= set(rep["stage_seconds"])
    # the artifact is a checkpoint plain transformers loads, with its vLLM command
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["quantization_config"]["quant_method"] == "compressed-tensors"
    script = (out / "serve.sh").read_text()
    assert "vllm serve" in script and f"--max-model-len {rep['serve']['context']}" in script
    subprocess.run(["bash", "-n", str(out / "serve.sh")], check=True)
    # the transformers snippet, as printed, from another directory and a clean shell: it
    # generates from the checkpoint (the tiny model's words are random, the prompt is echoed)
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", str(tmp_path)),
           "HF_HUB_OFFLINE": "1"}
    r = subprocess.run([sys.executable, str(out / "transformers_snippet.py")], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "The capital of France is" in r.stdout
