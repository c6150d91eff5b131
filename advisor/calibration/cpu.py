"""Published llama-bench runs on CPUs (profiles/measurements/llama.cpp-cpu.csv) as observations of
the class llama.cpp/CPU, and the CPU rates of a catalogue device they are fitted against.

A decode step is fitted as the bytes it reads over the bandwidth plus its matmul FLOPs over the
peak (advisor.calibration.fit), each at a fitted efficiency; a prefill as its FLOPs over the peak.

A CPU row counts when the published run used the whole chip: at least as many threads as the
entry's performance cores (all its physical cores where it lists no split). With fewer threads
neither the datasheet bandwidth nor the peak is what the run could reach, and llama.cpp's own
default is one thread per performance core; such rows stay in the file, unfitted. A decode row
also needs the file size llama-bench printed (the bytes a step reads).

Rates are the ones `advisor.probe.catalogue` gives a CPU target: the entry's `host` block where it
lists them (a system-on-chip whose top-level figures are its GPU's), else the entry's own for a
CPU-only entry (and its bandwidth where memory is unified), so a fit and the estimate it serves
read one figure. A prefill is fitted against the FP32 SIMD peak of every core: the int8 rates in
the catalogue mix dot-product instructions (VNNI, SDOT, I8MM) with matrix engines (AMX) that
llama.cpp uses for some types in some builds only, while every CPU entry lists the FP32 figure;
the fitted efficiency carries the rest (rated at each ISA's int8 dot-product rate instead,
prefill missed the held-out rows by a median 72%, against 58%).
"""

from __future__ import annotations

import re
from typing import Any

import profiles
from advisor.calibration.observations import GIB, MODELS, ModelDims, Observation

CPU_PEAK_KEY = "fp32"

# llama-bench prints an architecture and a size ("llama 1B"), and the parameter count that tells
# two models of one name apart; dimensions from each model's config.json.
CPU_MODELS: dict[tuple[str, str], ModelDims] = {
    ("llama 1B", "1.10 B"): MODELS["llama 1B"],
    ("llama 1B", "1.24 B"): ModelDims("Llama-3.2 1B", 16, 2048, 128256, 1.24e9, 512, tied=True),
    ("llama 3B", "3.21 B"): MODELS["llama 3B"],
    ("llama 7B", "6.74 B"): MODELS["llama 7B"],
    ("llama 7B", "7.25 B"): ModelDims("Mistral-7B v0.3", 32, 4096, 32768, 7.25e9, 1024),
    ("llama 8B", "8.03 B"): MODELS["llama 8B"],
    ("qwen2 3B", "3.09 B"): ModelDims("Qwen2.5 3B", 36, 2048, 151936, 3.09e9, 256, tied=True),
    ("qwen3 0.6B", "0.75 B"): ModelDims("Qwen3 0.6B", 28, 1024, 151936, 0.75e9, 1024,
                                        tied=True),
    ("gemma3 1B", "1.00 B"): ModelDims("Gemma 3 1B", 26, 1152, 262144, 1.00e9, 256, tied=True),
}


def cpu_rates(entry: dict[str, Any]) -> tuple[float | None, dict[str, float]]:
    """(memory bandwidth in B/s or None, peak TFLOP/s by dtype) of a catalogue entry's CPU:
    what `advisor.probe.catalogue` gives it as a --target."""
    from advisor.probe.catalogue import profile_from_entry

    cpu = profile_from_entry(entry).cpu
    bw = cpu.memory_bandwidth.value if cpu.memory_bandwidth is not None else None
    return bw, {k: f.value for k, f in cpu.peak_tflops.items()}


def whole_chip_threads(entry: dict[str, Any]) -> int:
    """Threads a run needs to count as the whole chip's: its performance cores, else all."""
    host = entry.get("host", {})
    return int(host.get("performance_cores") or host["physical_cores"])


def model_dims(row: dict[str, str]) -> ModelDims | None:
    """The published model's dimensions, by llama-bench's name and parameter count; None for a
    model not listed (a mixture of experts, an architecture without its config here)."""
    name = row["model"].split(" (")[0].strip()
    return CPU_MODELS.get((name, row.get("params", "").strip()))


def _test(test: str) -> tuple[str, int] | None:
    m = re.fullmatch(r"(pp|tg)(\d+)", test.strip())
    return None if m is None else ("prefill" if m.group(1) == "pp" else "decode", int(m.group(2)))


def usable(row: dict[str, str]) -> str | None:
    """Why a published CPU row is not fitted, or None when it is."""
    out = _observation(row)
    return out if isinstance(out, str) else None


def observations() -> list[Observation]:
    """Every usable CPU row: tgN as a decode step at a mean context of N/2 tokens, ppN as a
    prefill of N tokens (llama-bench runs no request around it: no fixed cost)."""
    rows = (_observation(row) for row in profiles.measurements("llama.cpp-cpu"))
    return [o for o in rows if isinstance(o, Observation)]


def _observation(row: dict[str, str]) -> Observation | str:
    """The row as an observation, or why it is not fitted."""
    if not row["backend"].startswith("CPU"):
        return "not the CPU backend"
    try:
        entry = profiles.load(row["device"])
    except KeyError:
        return "its device is not in the catalogue"
    dims, test = model_dims(row), _test(row["test"])
    if dims is None:
        return "its model is not listed (CPU_MODELS)"
    if test is None:
        return "not a ppN or tgN test"
    if int(row["threads"]) < whole_chip_threads(entry):
        return "fewer threads than the chip's (performance) cores"
    bw, peaks = cpu_rates(entry)
    if CPU_PEAK_KEY not in peaks:
        return f"the entry lists no CPU {CPU_PEAK_KEY} peak"
    (phase, n), peak = test, peaks[CPU_PEAK_KEY] * 1e12
    tps, label = float(row["tokens_per_s"]), f"{row['model']} {row['quant']}"
    if phase == "prefill":
        return Observation("llama.cpp", "CPU", entry["name"], "prefill", label, n / tps,
                           dims.prefill_flops(n), peak, dims.layers, row["source_url"])
    if bw is None or not row.get("size_gib"):
        return "a decode row without a printed file size or a CPU bandwidth"
    return Observation("llama.cpp", "CPU", entry["name"], "decode", label, 1 / tps,
                       dims.decode_bytes(float(row["size_gib"]) * GIB, n // 2), bw, dims.layers,
                       row["source_url"], dims.layers, dims.decode_flops(), peak)
