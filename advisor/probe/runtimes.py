"""Which runtime serves which format on a device: one pure function for catalogue and probe.

Format names: "gguf:*" means every GGML type (llama.cpp); the HF formats are W4A16, W8A16,
W8A8-INT8, W8A8-FP8 (llm-compressor / compressed-tensors) and NF4 (bitsandbytes).

The rules follow vLLM's "Supported Hardware" table for quantization kernels
(docs.vllm.ai/en/latest/features/quantization/) and llm-compressor's documented minimums:
INT8 W8A8 and the Marlin weight-only kernels from Turing (sm_75; Marlin needed sm_80 before
recent releases), FP8 W8A8 from sm_89, bitsandbytes on every CUDA GPU vLLM runs on (sm_70+).
On ROCm, vLLM serves FP8 (docs table), INT8 W8A8 through its Triton scaled-mm kernel
(vllm PR #12282) and compressed-tensors W4A16/W8A16 through the Exllama kernel (vllm PR #27187);
no bitsandbytes. transformers is listed on CUDA only: its ROCm paths were not checked.
"""

from __future__ import annotations

from advisor.formats.ggml import GGUF_ALL
from advisor.formats.schemes import QUANT_SCHEMES
from advisor.hardware import Accelerator, Capability, Vendor, parse_compute_capability

HF_FORMATS = QUANT_SCHEMES
"""Every HF format the advisor knows, in the order runtimes list them."""

LLAMA_CPP = "llama.cpp"
VLLM = "vllm"
TRANSFORMERS = "transformers"

# vLLM refuses CUDA devices below Volta.
_SM_VLLM_MIN = (7, 0)


def _nvidia_formats(acc: Accelerator) -> set[str]:
    if acc.arch is not None and parse_compute_capability(acc.arch) < _SM_VLLM_MIN:
        return set()
    formats = {"NF4"} if acc.has(Capability.CUDA) else set()
    if acc.has(Capability.INT8_TENSOR_CORES):
        formats |= {"W4A16", "W8A16", "W8A8-INT8"}
    if acc.has(Capability.FP8):
        formats.add("W8A8-FP8")
    return formats


def _rocm_formats(acc: Accelerator) -> set[str]:
    formats = {"W4A16", "W8A16"} if acc.has(Capability.ROCM) else set()
    if acc.has(Capability.INT8_TENSOR_CORES):
        formats.add("W8A8-INT8")
    if acc.has(Capability.FP8):
        formats.add("W8A8-FP8")
    return formats


def _ordered(formats: set[str]) -> tuple[str, ...]:
    return tuple(f for f in HF_FORMATS if f in formats)


def serving_formats(acc: Accelerator | None) -> dict[str, tuple[str, ...]]:
    """runtime -> formats it serves on a host whose primary accelerator is `acc` (None: CPU only).

    llama.cpp is always there (CPU, CUDA, HIP or Metal backend); vLLM and transformers only
    where their quantized GPU kernels exist. Apple GPUs get llama.cpp only.
    """
    runtimes: dict[str, tuple[str, ...]] = {LLAMA_CPP: (GGUF_ALL,)}
    if acc is None:
        return runtimes
    if acc.vendor is Vendor.NVIDIA:
        hf = _ordered(_nvidia_formats(acc))
        if hf:
            runtimes[VLLM] = hf
            runtimes[TRANSFORMERS] = hf
    elif acc.vendor is Vendor.AMD:
        hf = _ordered(_rocm_formats(acc))
        if hf:
            runtimes[VLLM] = hf
    return runtimes
