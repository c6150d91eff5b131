"""Serving files of an HF checkpoint: `serve.sh` (vLLM's OpenAI-compatible server) and a
transformers snippet; and which targets vLLM can serve a scheme on (llm-compressor's documented
minimums: W4A16/W8A16 and W8A8-INT8 from sm_75, Marlin int4 kernels from sm_80, W8A8-FP8 from
sm_89; bitsandbytes wherever CUDA is)."""

from __future__ import annotations

from advisor.hardware import (
    Capability,
    HardwareProfile,
    Vendor,
    supports,
    supports_fp8,
    supports_int4_weight_kernels,
    supports_int8_tensor_cores,
)
from backends.base import Support

SERVE_SCRIPT = "serve.sh"
SNIPPET = "transformers_snippet.py"


def serves_scheme(scheme: str, hw: HardwareProfile) -> Support:
    """Can vLLM (or bitsandbytes for NF4) serve `scheme` on the target's accelerator?"""
    acc = hw.primary
    if acc is None:
        return Support(False, f"{scheme} checkpoints are served by vLLM on a GPU; {hw.name} has "
                              "none (use the gguf backend for CPU targets)")
    if acc.vendor is Vendor.APPLE:
        return Support(False, f"vLLM does not serve {scheme} on Apple GPUs (use gguf/Metal)")
    where = f"{acc.name} ({acc.arch or acc.vendor.value})"
    if scheme == "NF4":
        ok = supports(hw, Capability.CUDA)
        return Support(ok, f"bitsandbytes NF4 {'runs' if ok else 'needs CUDA, not'} on {where}")
    if scheme == "W8A8-FP8":
        ok = supports_fp8(hw)
        return Support(ok, f"W8A8-FP8 {'served' if ok else 'needs FP8 tensor cores (sm_89+)'}"
                           f" on {where}")
    if scheme == "W8A8-INT8":
        ok = supports_int8_tensor_cores(hw)
        return Support(ok, f"W8A8-INT8 {'served' if ok else 'needs INT8 tensor cores (sm_75+)'}"
                           f" on {where}")
    # W4A16 / W8A16: from sm_75; the Marlin kernels (fast) from sm_80
    if not supports_int8_tensor_cores(hw) and acc.vendor is Vendor.NVIDIA:
        return Support(False, f"{scheme} needs compute capability 7.5+; {where} is older")
    if supports_int4_weight_kernels(hw):
        return Support(True, f"{scheme} served by vLLM with Marlin/Machete kernels on {where}")
    return Support(True, f"{scheme} served by vLLM on {where} without Marlin (sm_80+): slower "
                         "fallback kernels")


def serve_script(n_ctx: int, dtype: str = "float16") -> str:
    ctx = f" --max-model-len {n_ctx}" if n_ctx else ""
    return (
        "#!/usr/bin/env bash\n"
        "# OpenAI-compatible server for this checkpoint (vLLM reads the compressed-tensors\n"
        "# quantization_config from config.json); pip install vllm on a CUDA host.\n"
        "set -euo pipefail\n"
        'DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"\n'
        f'exec vllm serve "$DIR" --dtype {dtype}{ctx} "$@"\n'
    )


def transformers_snippet() -> str:
    return (
        '"""Load this checkpoint with transformers '
        '(pip install transformers compressed-tensors)."""\n'
        "from pathlib import Path\n\n"
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
        "here = Path(__file__).resolve().parent\n"
        "model = AutoModelForCausalLM.from_pretrained(here)\n"
        "tok = AutoTokenizer.from_pretrained(here)\n"
        'ids = tok("The capital of France is", return_tensors="pt")\n'
        "print(tok.decode(model.generate(**ids, max_new_tokens=16)[0]))\n"
    )


def serve_files(n_ctx: int) -> dict[str, str]:
    return {SERVE_SCRIPT: serve_script(n_ctx), SNIPPET: transformers_snippet()}
