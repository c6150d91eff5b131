"""Published measurements (profiles/measurements) as observations a latency model is fitted to.

One observation is one published figure turned into seconds, with the work it did: for a decode
step (llama-bench tg128, vLLM's time per output token) the bytes read per token; for a prefill
(llama-bench pp512, vLLM's time to first token) the FLOPs of the prompt. The device's datasheet
rates come from the catalogue (profiles/devices), scaled for an Apple GPU bin of another core
count and replaced where the row states the bin's bandwidth.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import profiles

GIB = 2**30


@dataclass(frozen=True)
class ModelDims:
    """What the latency model needs of a published model: from its config.json."""

    name: str
    layers: int
    hidden: int
    vocab: int
    params: float
    kv_dim: int  # n_kv_heads x head_dim
    tied: bool = False

    def decode_bytes(self, file_bytes: float, context: int) -> float:
        """Bytes read per decoded token: every weight but the embedding table (one row of it),
        unless tied to the head; plus the F16 KV cache at `context` tokens."""
        embedding = 0.0 if self.tied else file_bytes * self.vocab * self.hidden / self.params
        return file_bytes - embedding + 2 * self.layers * self.kv_dim * 2 * context

    def decode_flops(self) -> float:
        """Matmul FLOPs of one decoded token: 2 per weight of the layers and the LM head (the
        embedding is a lookup unless tied to the head)."""
        return 2 * (self.params - (0 if self.tied else self.vocab * self.hidden))

    def prefill_flops(self, tokens: int) -> float:
        """FLOPs of a prompt of `tokens` tokens: 2 per weight per token for the decoder layers,
        the LM head for the last token only (llama-bench and a server ask for its logits only),
        and causal attention (QK^T and AV: 4 x hidden per token pair, half the pairs)."""
        embedding = self.vocab * self.hidden
        layers = self.params - embedding * (1 if self.tied else 2)
        return (2 * layers * tokens + 2 * embedding
                + 4 * self.layers * self.hidden * tokens * tokens / 2)


# From each model's config.json (the llama-bench "model" column names them by size): LLaMA-2-7B,
# Meta-Llama-3-8B, TinyLlama-1.1B, Llama-3.2-3B (tied embeddings), Meta-Llama-3-70B.
MODELS = {
    "llama 7B": ModelDims("LLaMA-2 7B", 32, 4096, 32000, 6.74e9, 4096),
    "llama 8B": ModelDims("Llama-3 8B", 32, 4096, 128256, 8.03e9, 1024),
    "llama 1B": ModelDims("TinyLlama 1.1B", 22, 2048, 32000, 1.10e9, 256),
    "llama 3B": ModelDims("Llama-3.2 3B", 28, 3072, 128256, 3.21e9, 1024, tied=True),
    "llama 70B": ModelDims("Llama-3 70B", 80, 8192, 128256, 70.55e9, 1024),
}
# BF16 checkpoints that vLLM rows name (their bytes are 2 per parameter)
VLLM_MODELS = {"meta-llama/Meta-Llama-3-8B-Instruct": "llama 8B",
               "meta-llama/Llama-3.1-8B-Instruct": "llama 8B"}


@dataclass(frozen=True)
class Observation:
    """One published figure: `seconds` for the work `amount` (bytes read for a decode step, FLOPs
    for a prefill) on `device` at its datasheet `rate` (bytes/s or FLOP/s)."""

    runtime: str  # "llama.cpp" or "vllm"
    backend: str  # CUDA, Metal, ROCm, Vulkan, CPU
    device: str
    test: str  # "decode" or "prefill"
    label: str  # model and format, as published
    seconds: float
    amount: float
    rate: float
    layers: int
    source: str
    fixed_units: int = 0  # how many times the fixed cost is paid: layers (decode), 1 (a
    # server's prompt: scheduling) or 0 (llama-bench's prefill, no request around it)
    flops: float = 0.0  # a CPU decode step's matmul FLOPs (the same cores stream the weights
    peak: float = 0.0  # and compute: advisor.calibration.cpu), and the FLOP/s they run at

    @property
    def per_second(self) -> float:
        return 1.0 / self.seconds


def device_class(backend: str, runtime: str = "llama.cpp") -> str:
    """The class a fit is shared by: the runtime and its compute backend (the kernels that run),
    not the device."""
    return runtime if runtime != "llama.cpp" else f"llama.cpp/{backend}"


def peak_key(backend: str, quant: str) -> str:
    """Which datasheet peak a prefill runs at: llama.cpp's CUDA kernels multiply quantized
    weights with int8 dot products (MMQ), F16 through cuBLAS; Metal, ROCm and Vulkan are fitted
    against the FP16 peak; vLLM's BF16 against BF16."""
    if backend == "CUDA":
        return "fp16"
    return "bf16" if quant.lower() == "bf16" else "fp16"


def _cores(display: str) -> int | None:
    m = re.search(r"(\d+)-core GPU", display)
    return int(m.group(1)) if m else None


def rates(device: str, row: dict[str, str], key: str, backend: str) -> tuple[float, float]:
    """(bandwidth B/s, peak FLOP/s at `key`) of the published device: the catalogue's figures,
    the peak scaled to the row's GPU core count (Apple bins) and the bandwidth the row states."""
    entry = profiles.load(device)
    bandwidth = float(row.get("bandwidth_GBps") or entry["memory_bandwidth_GBps"]) * 1e9
    peak = prefill_peak(device, entry.get("peak_tflops", {}), key, backend)
    cores, listed = row.get("gpu_cores"), _cores(entry.get("display_name", ""))
    if cores and listed:
        peak *= int(cores) / listed
    return bandwidth, peak


def prefill_peak(device_name: str, peaks: dict[str, float], key: str, backend: str) -> float:
    """FLOP/s a prefill is fitted against: `peaks` (TFLOP/s by dtype) at `key`, the
    FP16-accumulate rate for CUDA where the catalogue lists one for this device (cuBLAS computes
    FP16 GEMMs in FP16: twice the FP32-accumulate rate on GeForce)."""
    entry = profiles.match_device(device_name)
    if backend == "CUDA" and entry is None:  # a catalogue name or alias (a --target)
        try:
            entry = profiles.load(device_name)
        except KeyError:
            entry = None
    if backend == "CUDA" and entry is not None:
        peaks = {**peaks, **entry.get("peak_tflops_fp16_accumulate", {})}
    return float(peaks.get(key) or peaks["fp16"]) * 1e12


def llama_cpp() -> list[Observation]:
    """Every llama-bench row whose model is known: tg128 as a decode step at a 64-token mean
    context, pp512 as a 512-token prefill."""
    out = []
    for row in profiles.measurements("llama.cpp"):
        dims = MODELS.get(row["model"])
        if dims is None:
            continue
        backend, tps = row["backend"], float(row["tokens_per_s"])
        bandwidth, peak = rates(row["device"], row, peak_key(backend, row["quant"]), backend)
        label = f"{row['model']} {row['quant']}"
        if row["test"] == "tg128":
            amount = dims.decode_bytes(float(row["size_gib"]) * GIB, 64)
            obs = Observation("llama.cpp", backend, row["device"], "decode", label, 1 / tps,
                              amount, bandwidth, dims.layers, row["source_url"], dims.layers)
        else:
            obs = Observation("llama.cpp", backend, row["device"], "prefill", label, 512 / tps,
                              dims.prefill_flops(512), peak, dims.layers, row["source_url"])
        out.append(obs)
    return out


def vllm() -> list[Observation]:
    """vLLM rows of one request at a time: time per output token as a decode step at the mean
    context, time to first token as a prefill of the stated input length."""
    out = []
    for row in profiles.measurements("vllm"):
        key = VLLM_MODELS.get(row["model"])
        if key is None or row["batch"] != "1" or row["metric"] not in ("tpot_ms", "ttft_ms"):
            continue
        dims, inp = MODELS[key], int(float(row["input_len"]))
        bandwidth, peak = rates(row["device"], row, peak_key("CUDA", row["quant"]), "vllm")
        seconds = float(row["value"]) / 1e3
        label = f"{row['model']} {row['quant']}, {inp} in"
        if row["metric"] == "tpot_ms":
            context = inp + int(float(row["output_len"])) // 2
            obs = Observation("vllm", "CUDA", row["device"], "decode", label, seconds,
                              dims.decode_bytes(2 * dims.params, context), bandwidth,
                              dims.layers, row["source_url"], dims.layers)
        else:
            obs = Observation("vllm", "CUDA", row["device"], "prefill", label, seconds,
                              dims.prefill_flops(inp), peak, dims.layers, row["source_url"], 1)
        out.append(obs)
    return out
