"""Issue 5's reload check, in `make test`: a checkpoint written by `advisor quantize`, scored by
`advisor eval` (the pipeline's measurement, recorded in report.json), then loaded by plain
`transformers.AutoModelForCausalLM.from_pretrained(dir)` in a fresh interpreter and scored
against the same cached reference log-probabilities: the two mean KLs agree within 5%."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

WINDOWS = 2
FRESH = """
import json, sys
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForCausalLM

from advisor.measure.quality import metrics
from advisor.measure.quality.cache import load_cache

ref = load_cache(Path(sys.argv[2]), sys.argv[3])
model = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32).eval()
first, kls = ref.config.first_scored, []
for w in range(ref.n_windows):
    with torch.no_grad():
        logits = model(torch.tensor([ref.tokens[w].tolist()])).logits[0].double().numpy()
    lq = metrics.log_softmax(logits[first:first + ref.n_scored])
    kls.append(metrics.kl_divergence(ref.logprobs(w), lq))
print(json.dumps(float(np.concatenate(kls).mean())))
"""


def advisor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "advisor.cli", *args], capture_output=True,
                          text=True, timeout=900)


@pytest.mark.slow
@pytest.mark.parametrize("backend,bits", [("rtn", 4), ("fp8", 8)])
def test_a_fresh_process_reproduces_the_pipeline_kl(tmp_path: Path, backend: str,
                                                    bits: int) -> None:
    from advisor.inspect import inspect_model
    from advisor.measure.quality import WindowConfig, reference_logprobs
    from advisor.textdata import default_evaluation_text
    from backends.gguf import f16_reference

    out = tmp_path / backend
    r = advisor("quantize", "--model", "smollm2-135m", "--backend", backend, "--bits", str(bits),
                "--out", str(out))
    assert r.returncode == 0, r.stderr
    r = advisor("eval", "--model", "smollm2-135m", "--artifact", str(out), "--max-windows",
                str(WINDOWS), "--json")
    assert r.returncode == 0, r.stderr
    # vLLM picks its model class from `architectures` (transformers' GGUF loader leaves it unset)
    assert json.loads((out / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
    pipeline = json.loads((out / "report.json").read_text())["measurements"]["quality"]
    assert pipeline["n_windows"] == WINDOWS
    in_pipeline = pipeline["mean_kl"]["value"]
    # the same cache `advisor eval` scored against (read back, not recomputed)
    ref = reference_logprobs(f16_reference(inspect_model("smollm2-135m")),
                             default_evaluation_text(),
                             WindowConfig(n_ctx=512, max_windows=WINDOWS))
    res = subprocess.run([sys.executable, "-c", FRESH, str(out), str(ref.path), ref.path.name],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    fresh = json.loads(res.stdout.strip().splitlines()[-1])
    assert in_pipeline > 0 and abs(fresh - in_pipeline) <= 0.05 * in_pipeline, \
        (fresh, in_pipeline)
