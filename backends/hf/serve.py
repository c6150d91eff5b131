"""Serving files of an HF checkpoint: `serve.sh` (vLLM's OpenAI-compatible server) and a
transformers snippet; and whether a target serves a scheme.

Which runtime serves which scheme on a device is answered once, by the target's
`HardwareProfile.runtimes` (profiles/devices/*.json for a catalogue target, derived from the
documented kernel minimums by advisor.probe.runtimes.serving_formats for a probed host); this
module only words the answer (what the scheme needs, which kernels serve it).
"""

from __future__ import annotations

from advisor.artifact.serving import Serving
from advisor.hardware import HardwareProfile, Vendor, supports_int4_weight_kernels
from backends.base import Support

SERVE_SCRIPT = "serve.sh"
SNIPPET = "transformers_snippet.py"
_NEEDS = {
    "W4A16": "compute capability 7.5+ (vLLM's int weight-only kernels)",
    "W8A16": "compute capability 7.5+ (vLLM's int weight-only kernels)",
    "W8A8-INT8": "INT8 tensor cores (sm_75+)",
    "W8A8-FP8": "FP8 tensor cores (sm_89+)",
    "NF4": "CUDA (bitsandbytes)",
}


def serves_scheme(scheme: str, hw: HardwareProfile) -> Support:
    """Does a runtime of the target (vLLM, transformers) serve `scheme` on its accelerator?"""
    acc = hw.primary
    if acc is None:
        return Support(False, f"{scheme} checkpoints are served by vLLM on a GPU; {hw.name} has "
                              "none (use the gguf backend for CPU targets)")
    if acc.vendor is Vendor.APPLE:
        return Support(False, f"vLLM does not serve {scheme} on Apple GPUs (use gguf/Metal)")
    where = f"{acc.name} ({acc.arch or acc.vendor.value})"
    runtimes = [rt for rt, fmts in hw.runtimes.items() if scheme in fmts]
    if not runtimes:
        return Support(False, f"{scheme} needs {_NEEDS.get(scheme, 'a runtime that serves it')}"
                              f"; no runtime of {hw.name} serves it on {where}")
    if scheme == "NF4":
        return Support(True, f"bitsandbytes NF4 runs on {where} ({', '.join(runtimes)})")
    if scheme in ("W4A16", "W8A16"):
        if supports_int4_weight_kernels(hw):
            return Support(True, f"{scheme} served by vLLM with Marlin/Machete kernels on {where}")
        return Support(True, f"{scheme} served by vLLM on {where} without Marlin (sm_80+): "
                             "slower fallback kernels")
    return Support(True, f"{scheme} served by {', '.join(runtimes)} on {where}")


def serve_script(serving: Serving, dtype: str = "float16", extra: str = "") -> str:
    """vLLM's OpenAI-compatible server on ${HOST:-127.0.0.1}:${PORT:-8000}, with the context and
    parallel sequences of `serving` (the same figures as a GGUF artifact's serve.sh)."""
    return (
        "#!/usr/bin/env bash\n"
        "# OpenAI-compatible server for this checkpoint (vLLM reads the quantization_config\n"
        "# from config.json); pip install vllm on a CUDA host.\n"
        f"# Context: {serving.context} tokens per request ({serving.why or 'as requested'});\n"
        f"# {serving.parallel} concurrent sequence(s).\n"
        "set -euo pipefail\n"
        'DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"\n'
        f'exec vllm serve "$DIR" --dtype {dtype}{extra} --max-model-len {serving.context} '
        f'--max-num-seqs {serving.parallel} \\\n'
        '    --host "${HOST:-127.0.0.1}" --port "${PORT:-8000}" "$@"\n'
    )


def transformers_snippet() -> str:
    return (
        '"""Load this checkpoint with transformers '
        '(pip install transformers compressed-tensors)."""\n'
        "from pathlib import Path\n\n"
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
        "here = Path(__file__).resolve().parent\n"
        "model = AutoModelForCausalLM.from_pretrained(here, trust_remote_code=False)\n"
        "tok = AutoTokenizer.from_pretrained(here, trust_remote_code=False)\n"
        'ids = tok("The capital of France is", return_tensors="pt")\n'
        "print(tok.decode(model.generate(**ids, max_new_tokens=16)[0]))\n"
    )


def serve_files(serving: Serving) -> dict[str, str]:
    return {SERVE_SCRIPT: serve_script(serving), SNIPPET: transformers_snippet()}
