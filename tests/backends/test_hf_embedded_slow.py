"""The issue's done-when figures on the embedded model, judged on the written checkpoints loaded by
plain transformers on the CPU against the F16 reference the GGUF candidates are measured with:
GPTQ and AWQ at 4 bits, group size 128, reach at most 0.7x RTN's mean KL; a checkpoint reloaded
in a fresh process reproduces the pipeline's KL within 5%; the unquantized float copy sits on
the reference (the floor)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from advisor.modelspec import ModelSpec
from advisor.space.named import plan_for_format
from backends import get_backend
from backends.base import QuantizeOptions

# GPTQ and AWQ on the whole embedded model take minutes on 2 cores (idle, 2026-12-07: GPTQ
# (llm-compressor) 65 s, AWQ 104 s; a shared machine: many times that), beyond `make test`'s
# budget; these run with QUANT_ADVISOR_LONG_TESTS=1. `make bench SECTION=hf` measures the same on
# held-out text (BENCHMARKS.md: GPTQ 0.54x, AWQ 0.54x RTN's KL); the fresh-process check runs
# in `make test` for rtn and fp8 (test_hf_reload.py).
pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    os.environ.get("QUANT_ADVISOR_LONG_TESTS") != "1",
    reason="GPTQ/AWQ on the embedded model take tens of minutes; set QUANT_ADVISOR_LONG_TESTS=1")]
EVAL_WINDOWS = 4


@pytest.fixture(scope="module")
def reference(embedded_spec: ModelSpec) -> object:
    from advisor.measure.quality import WindowConfig, reference_logprobs
    from advisor.textdata import default_evaluation_text
    from backends.gguf import f16_reference

    return reference_logprobs(f16_reference(embedded_spec, threads=2),
                              default_evaluation_text(),
                              WindowConfig(n_ctx=512, max_windows=EVAL_WINDOWS), threads=2)


@pytest.fixture(scope="module")
def written(embedded_spec: ModelSpec, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf-int")
    out = {}
    for name in ("rtn", "gptq", "awq"):
        plan = plan_for_format(embedded_spec, "W4A16", group_size=128, backend=name)
        get_backend(name).quantize(embedded_spec, plan, root / name, QuantizeOptions(threads=2))
        out[name] = root / name
    return out


def _kl(artifact: Path, backend: str, ref: object) -> float:
    from advisor.measure.quality import measure_quality

    runner = get_backend(backend).load(artifact, threads=2)
    try:
        return float(measure_quality(runner, ref).mean_kl.value)  # type: ignore[arg-type]
    finally:
        runner.close()


def test_gptq_and_awq_beat_rtn(written: dict[str, Path], reference: object) -> None:
    kl = {name: _kl(d, name, reference) for name, d in written.items()}
    assert kl["gptq"] <= 0.7 * kl["rtn"], kl
    assert kl["awq"] <= 0.7 * kl["rtn"], kl


def test_fresh_process_reproduces_kl(written: dict[str, Path], reference: object) -> None:
    """Plain `AutoModelForCausalLM.from_pretrained(dir)` in a new interpreter, logits scored
    against the same cached reference."""
    in_process = _kl(written["gptq"], "gptq", reference)
    code = (
        "import sys, json, torch, numpy as np\n"
        "from transformers import AutoModelForCausalLM\n"
        "from advisor.measure.quality.cache import load_cache\n"
        "from advisor.measure.quality import metrics\n"
        "ref = load_cache(__import__('pathlib').Path(sys.argv[2]), sys.argv[3])\n"
        "m = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32).eval()\n"
        "first = ref.config.first_scored; kls = []\n"
        "for w in range(ref.n_windows):\n"
        "    with torch.no_grad():\n"
        "        lg = m(torch.tensor([ref.tokens[w].tolist()])).logits[0].numpy()\n"
        "    rows = slice(0, ref.n_scored)\n"
        "    lq = metrics.log_softmax(lg[first:first + ref.n_scored])\n"
        "    kls.append(metrics.kl_divergence(ref.logprobs(w, rows), lq))\n"
        "print(json.dumps(float(np.concatenate(kls).mean())))\n"
    )
    path = reference.path  # type: ignore[attr-defined]
    res = subprocess.run([sys.executable, "-c", code, str(written["gptq"]), str(path),
                          path.name], capture_output=True, text=True, check=True)
    fresh = json.loads(res.stdout.strip().splitlines()[-1])
    assert abs(fresh - in_process) <= 0.05 * in_process, (fresh, in_process)


def test_float_floor(embedded_spec: ModelSpec, reference: object) -> None:
    """The unquantized float16 HF copy, run by transformers, against llama.cpp's F16 reference:
    the same weights bit for bit, so only the runtimes' arithmetic differs."""
    from advisor.measure.quality import measure_quality
    from backends.hf.runner import HfRunner
    from backends.hf.source import float_source

    runner = HfRunner(float_source(embedded_spec), threads=2)
    try:
        floor = float(measure_quality(runner, reference).mean_kl.value)  # type: ignore[arg-type]
    finally:
        runner.close()
    assert floor < 0.01
