"""Predicted memory and roofline latency of a plan on a target; every figure is *predicted*.

Memory = weights (scales and zero points included) + KV cache (context x batch at the KV dtype) +
runtime overhead (compute buffers). Latency is a roofline: prefill is compute-bound (2 FLOPs per
weight per token plus attention), decode is bandwidth-bound (every weight byte and the KV cache
read once per step), each at an efficiency factor that `make bench` checks against measurement.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from advisor import formats
from advisor.figures import BYTES, SECONDS, Figure, Origin
from advisor.formats.schemes import HEADER_BYTES_PER_ENTRY, SHARD_HEADER_BYTES, stored_entries
from advisor.hardware import CpuInfo, HardwareProfile, Vendor
from advisor.modelspec import ModelSpec, Role, SourceFormat
from advisor.plan import QuantPlan

# Fractions of the datasheet/measured roofline that runtimes reach in practice; rough values from
# llama.cpp and vLLM decode benchmarks, stated as assumptions in every estimate.
BANDWIDTH_EFFICIENCY = 0.7
COMPUTE_EFFICIENCY = 0.5
# CPU peak when no figure is known: FP32 FLOPs per cycle per core by widest SIMD (2 FMA units),
# at an assumed clock. Marked as an assumption in the estimate.
_CPU_FLOPS_PER_CYCLE = (("avx512f", 64), ("avx2", 32), ("neon", 16))
_ASSUMED_CPU_GHZ = 2.5
# Fixed cost per decoder layer per forward pass (kernel launches on a GPU, thread barriers on a
# CPU): small models are launch-bound long before they are bandwidth-bound.
STEP_OVERHEAD_S_PER_LAYER = {"gpu": 40e-6, "cpu": 10e-6}
# Runtime base overhead (allocator, CUDA context, scratch): bytes.
RUNTIME_BASE_BYTES = {"llama.cpp": 32 << 20, "vllm": 1 << 30, "transformers": 512 << 20}
GGUF_TENSOR_ALIGNMENT = 32
# Which peak rate the matmuls of each storage format run at, by runtime placement.
_GPU_RATE_KEY = {"W8A8-INT8": "int8", "W8A8-FP8": "fp8"}


@dataclass(frozen=True)
class Workload:
    """What the deployment serves: prompt and output lengths, concurrent requests, context."""

    prompt_tokens: int = 512
    new_tokens: int = 128
    concurrency: int = 1
    context: int = 0  # 0: prompt_tokens + new_tokens

    def __post_init__(self) -> None:
        for name in ("prompt_tokens", "new_tokens", "concurrency"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"Workload.{name}={value!r}; expected an integer >= 1")
        if not isinstance(self.context, int) or self.context < 0:
            raise ValueError(f"Workload.context={self.context!r}; expected an integer >= 0")
        if self.context == 0:
            object.__setattr__(self, "context", self.prompt_tokens + self.new_tokens)

    @property
    def context_tokens(self) -> int:
        return self.context or self.prompt_tokens + self.new_tokens

    def to_dict(self) -> dict[str, Any]:
        return {"prompt_tokens": self.prompt_tokens, "new_tokens": self.new_tokens,
                "concurrency": self.concurrency, "context": self.context_tokens}


@dataclass(frozen=True)
class Estimate:
    """Predicted bytes and latency of one plan on one target."""

    plan_label: str
    plan_digest: str
    runtime: str
    device: str
    weights: Figure
    kv_cache: Figure
    overhead: Figure
    total_memory: Figure
    file_size: Figure
    bits_per_weight: float
    ttft: Figure
    per_token: Figure
    request_latency: Figure
    device_memory: Figure | None
    assumptions: tuple[str, ...] = field(default_factory=tuple)
    workload: Workload | None = None  # the requests ttft/per_token/request_latency are for
    features: dict[str, float] = field(default_factory=dict)  # what the latency came from

    @property
    def fits(self) -> bool:
        return self.device_memory is None or self.total_memory.value <= self.device_memory.value

    def to_dict(self) -> dict[str, Any]:
        figs = ("weights", "kv_cache", "overhead", "total_memory", "file_size", "ttft",
                "per_token", "request_latency")
        out: dict[str, Any] = {
            "plan_label": self.plan_label,
            "plan_digest": self.plan_digest,
            "runtime": self.runtime,
            "device": self.device,
            "bits_per_weight": round(self.bits_per_weight, 4),
            "fits": self.fits,
            "device_memory": self.device_memory.to_dict() if self.device_memory else None,
            "assumptions": list(self.assumptions),
        }
        if self.workload is not None:
            out["workload"] = self.workload.to_dict()
        if self.features:
            out["features"] = dict(self.features)
        out.update({k: getattr(self, k).to_dict() for k in figs})
        return out


def _pred(value: float, unit: str, band: tuple[float, float] | None = None) -> Figure:
    return Figure(value, unit, Origin.PREDICTED, band=band)


_Band = tuple[float, float] | None
_Latency = tuple[float, float, _Band, _Band, list[str]]


def _calibrated(spec: ModelSpec, plan: QuantPlan, hw: HardwareProfile, runtime: str,
                wl: Workload, decode_bytes: float, decode_flops: float) -> _Latency | None:
    """TTFT and per-token seconds from the latency model fitted to published measurements of
    the deployment's class (advisor.calibration), with their held-out error bands; None when no
    class fits (transformers), the device lacks a datasheet rate, or the CPU is this host's."""
    from advisor import calibration

    acc = hw.primary
    cls = calibration.runtime_class(runtime, acc.vendor.value if acc else None)
    dfit = calibration.lookup(cls, "decode") if cls else None
    pfit = calibration.lookup(cls, "prefill") if cls else None
    if cls is None or dfit is None or pfit is None:
        return None
    if acc is None:  # a catalogue CPU; this host has its own kernel timings and benches instead
        from advisor.calibration.cpu import CPU_PEAK_KEY

        fp = hw.cpu.peak_tflops.get(CPU_PEAK_KEY)
        if not hw.source.startswith("profile:") or hw.cpu.memory_bandwidth is None or fp is None:
            return None
        bw, peak, key = hw.cpu.memory_bandwidth.value, fp.value * 1e12, f"CPU {CPU_PEAK_KEY}"
    else:
        if acc.memory_bandwidth is None:
            return None
        bw = acc.memory_bandwidth.value
        backend = "CUDA" if runtime == "vllm" else cls.split("/")[-1]
        quant = "F16" if all(f in ("F16", "BF16", "F32")
                             for f in plan.tensor_formats.values()) else "Q"
        peaks = {k: v.value for k, v in acc.peak_tflops.items()}
        if "fp16" not in peaks:
            return None
        key = calibration.peak_key(backend, quant)
        if runtime == "vllm":  # FP8 / INT8 GEMMs at their own rate (the fit saw BF16 only)
            key = next((_GPU_RATE_KEY[s] for s in set(plan.tensor_formats.values())
                        if s in _GPU_RATE_KEY), "bf16")
        catalogued = hw.source.partition("profile:")[2] or acc.name
        peak = calibration.prefill_peak(catalogued, peaks, key, backend)
    dims = calibration.ModelDims(spec.name, spec.n_layers, spec.hidden_size, spec.vocab_size,
                                 float(spec.n_params), spec.n_kv_heads * spec.head_dim,
                                 spec.tied_embeddings)
    cpu_peak = peak if acc is None else 0.0  # a CPU decode's FLOPs: the fit's compute term
    per_token = dfit.coefficients.seconds(decode_bytes, bw, spec.n_layers, decode_flops,
                                          cpu_peak)
    prompt_units = 1 if runtime == "vllm" else 0
    ttft = pfit.coefficients.seconds(dims.prefill_flops(wl.prompt_tokens) * wl.concurrency,
                                     peak, prompt_units)
    notes = [f"latency model of {cls} fitted to {dfit.rows} decode and {pfit.rows} prefill "
             f"published measurements on {len(set(dfit.devices) | set(pfit.devices))} devices "
             f"(decode at {dfit.coefficients.efficiency:.2f} of the memory bandwidth"
             + (f" + {dfit.coefficients.fixed_s * 1e6:.0f} us per layer"
                if dfit.coefficients.fixed_s else "")
             + (f" + its FLOPs at {dfit.coefficients.compute_efficiency:.2f} of the CPU "
                "peak" if cpu_peak and dfit.coefficients.compute_efficiency else "")
             + "; prefill at "
             f"{pfit.coefficients.efficiency:.2f} of the {key} "
             "peak); bands: 10th-90th percentile of its leave-one-device-out errors"]
    if acc is None:
        notes.append("llama.cpp on every performance core (-t at their count), as the "
                     "published CPU runs the fit uses")
    return (ttft, per_token, (ttft * pfit.band[0], ttft * pfit.band[1]),
            (per_token * dfit.band[0], per_token * dfit.band[1]), notes)


def _roofline(spec: ModelSpec, device: str, bw: float, flops: float,
              features: dict[str, float]) -> _Latency:
    """The uncalibrated roofline, where no published measurements cover the class."""
    bw_eff, fl_eff = bw * BANDWIDTH_EFFICIENCY, flops * COMPUTE_EFFICIENCY
    step_floor = spec.n_layers * STEP_OVERHEAD_S_PER_LAYER["cpu" if device.startswith("CPU")
                                                          else "gpu"]
    if device.startswith("CPU"):
        # the same few cores stream the weights and do the dot products: the two add up (a
        # 2-core host measured 8.6-10.5 ms per token on SmolLM2-135M against 9.2-12.8 summed,
        # 4.3-8.6 as a max); a many-core server is bandwidth-bound, where the sum is the bytes
        per_token = (features["decode_bytes"] / bw_eff + features["decode_flops"] / fl_eff
                     + step_floor)
    else:
        per_token = max(features["decode_bytes"] / bw_eff, features["decode_flops"] / fl_eff,
                        step_floor)
    ttft = max(features["prefill_flops"] / fl_eff, features["prefill_bytes"] / bw_eff,
               step_floor)
    notes = [f"uncalibrated roofline: bandwidth efficiency {BANDWIDTH_EFFICIENCY}, compute "
             f"efficiency {COMPUTE_EFFICIENCY} (no published measurements of this class)",
             f"at least {step_floor * 1e3:.2f} ms per forward pass (fixed per-layer overhead)"]
    return ttft, per_token, None, None, notes


def kernel_features(spec: ModelSpec, plan: QuantPlan, prompt_tokens: int,
                    attention_units: float) -> dict[str, float]:
    """What `advisor.calibration.kernels` sums for a GGUF plan on this host: the weights of each
    GGML type read per decode step in the layers (`w:<TYPE>`) and in the LM head (`head:<TYPE>`,
    the embedding where it is tied), the layer shape, the prompt, and layers x heads x context
    tokens (`attention_units`)."""
    out = {"hidden": float(spec.hidden_size), "ffn": float(spec.intermediate_size),
           "n_heads": float(spec.n_heads), "n_kv_heads": float(spec.n_kv_heads),
           "head_dim": float(spec.head_dim), "prompt_tokens": float(prompt_tokens),
           "attention_units": float(attention_units)}
    for t in spec.tensors:
        if len(t.shape) < 2 or t.role in (Role.NORM, Role.OTHER) or (
                t.role is Role.EMBEDDING and not spec.tied_embeddings):
            continue
        head = t.role in (Role.EMBEDDING, Role.LM_HEAD)
        key = f"{'head' if head else 'w'}:{plan.tensor_formats.get(t.canonical, t.dtype)}"
        out[key] = out.get(key, 0.0) + float(t.n_params)
    return out


def _host_note(fitted: dict[str, Any]) -> str:
    """Where this host's figures came from (advisor.calibration.host's `how` and count)."""
    parts = []
    for phase, (_, _, n, how) in sorted(fitted.items()):
        src = ("this host's llama.cpp kernel timings per type (advisor.calibration.kernels)"
               if how == "kernels" else "this host's benches (advisor.calibration.host)")
        scaled = (f", scaled by {n} earlier benches of other artifacts"
                  + (" (band: their leave-one-out spread)" if n >= 3 else "")
                  if how == "kernels" and n else "")
        if how != "kernels":
            src += f", {n} earlier benches (band: their leave-one-out errors)"
        parts.append(f"{phase} from {src}{scaled}")
    return "; ".join(parts)


def _on_this_host(roofline: _Latency, features: dict[str, float],
                  exclude: str | None = None) -> _Latency:
    """The roofline's phases replaced by this host's own figures where it has them."""
    from advisor.calibration import host

    fitted = host.predict(features, exclude=exclude)
    if not fitted:
        return roofline
    ttft, per_token, ttft_band, token_band, notes = roofline
    if "prefill" in fitted:
        ttft, ttft_band, _, _ = fitted["prefill"]
    if "decode" in fitted:
        per_token, token_band, _, _ = fitted["decode"]
    return ttft, per_token, ttft_band, token_band, [_host_note(fitted), *notes]


def recalibrated(est: dict[str, Any], exclude: str) -> dict[str, Any] | None:
    """A report's estimate (made for this host) with its latency re-predicted from this host's
    benches of other artifacts: recommend re-predicts each candidate after the ones benched
    before it. None when the benches cannot improve it (too few, or no features recorded)."""
    from advisor.calibration import host

    feats = host.numeric(est.get("features"))  # a report is a stranger's file
    fitted = host.predict(feats, exclude=exclude) if feats else {}
    if not fitted or not all(isinstance(est.get(k), dict)
                             and isinstance(est[k].get("value"), (int, float))
                             for k in ("ttft", "per_token")):
        return None
    out = dict(est)
    for phase, key in (("prefill", "ttft"), ("decode", "per_token")):
        if phase in fitted:
            value, band, _, _ = fitted[phase]
            out[key] = _pred(value, SECONDS, band).to_dict()
    new = float(feats.get("new_tokens", 0))
    request = out["ttft"]["value"] + new * out["per_token"]["value"]
    bands = [out[k].get("band") for k in ("ttft", "per_token")]
    rb = ((bands[0][0] + new * bands[1][0], bands[0][1] + new * bands[1][1])
          if all(bands) else None)
    out["request_latency"] = _pred(request, SECONDS, rb).to_dict()  # type: ignore[index]
    before = est.get("assumptions")
    kept = [a for a in before if isinstance(a, str)] if isinstance(before, list) else []
    out["assumptions"] = [f"latency re-predicted before this bench: {_host_note(fitted)}",
                          *kept]
    return out


def runtime_for(plan: QuantPlan, hw: HardwareProfile) -> str:
    if plan.backend == "gguf":
        return "llama.cpp"
    acc = hw.primary
    return "vllm" if acc is not None and acc.vendor is not Vendor.APPLE else "transformers"


def weight_bytes(spec: ModelSpec, plan: QuantPlan) -> dict[str, int]:
    """Bytes each tensor takes in the plan's formats (scales and zero points included)."""
    gs = int(plan.options.get("group_size", 128))
    out = {}
    for t in spec.tensors:
        fmt = plan.tensor_formats.get(t.canonical, t.dtype)
        out[t.canonical] = formats.tensor_bytes(fmt, t.shape, group_size=gs)
    return out


def cpu_peak_flops(cpu: CpuInfo) -> tuple[float, str | None]:
    """FP32 peak of the host CPU in FLOP/s, and the assumption made when none is known."""
    if "fp32" in cpu.peak_tflops:
        return cpu.peak_tflops["fp32"].value * 1e12, None
    per_cycle = next((n for flag, n in _CPU_FLOPS_PER_CYCLE if flag in cpu.isa), 8)
    cores = cpu.physical_cores or cpu.logical_cores or 1
    note = (f"CPU peak assumed {cores} cores x {_ASSUMED_CPU_GHZ} GHz x {per_cycle} FLOP/cycle")
    return cores * _ASSUMED_CPU_GHZ * 1e9 * per_cycle, note


_Rates = tuple[float, float, str, "Figure | None", list[str]]


def _rates(plan: QuantPlan, hw: HardwareProfile, runtime: str) -> _Rates:
    """(bandwidth B/s, compute FLOP/s, device name, device memory, assumptions)."""
    notes: list[str] = []
    acc = hw.primary
    if acc is not None and (runtime != "llama.cpp" or acc.vendor in (Vendor.NVIDIA, Vendor.AMD,
                                                                       Vendor.APPLE)):
        schemes = set(plan.tensor_formats.values())
        key = next((_GPU_RATE_KEY[s] for s in schemes if s in _GPU_RATE_KEY), "fp16")
        if runtime == "llama.cpp":
            key = "int8"  # llama.cpp's MMQ kernels run quantized matmuls on int8 dot products
        peak = acc.peak_tflops.get(key) or acc.peak_tflops.get("fp16")
        if peak is None:
            raise ValueError(f"{acc.name} has no peak rate for {key}; the profile must list fp16")
        if acc.memory_bandwidth is None:
            raise ValueError(f"{acc.name} has no memory bandwidth in its profile")
        return acc.memory_bandwidth.value, peak.value * 1e12, acc.name, acc.memory, notes
    if hw.cpu.memory_bandwidth is None:
        raise ValueError("the host profile has no memory bandwidth; probe it or pick a --target")
    flops, note = cpu_peak_flops(hw.cpu)
    if note:
        notes.append(note)
    mem = hw.cpu.ram_available or hw.cpu.ram_total
    return hw.cpu.memory_bandwidth.value, flops, f"CPU ({hw.cpu.model})", mem, notes


def estimate(spec: ModelSpec, plan: QuantPlan, hw: HardwareProfile,
             workload: Workload | None = None, kv_bytes_per_value: int = 2) -> Estimate:
    """Predict memory and latency of `plan` for `spec` on `hw` under `workload`."""
    wl = workload or Workload()
    runtime = runtime_for(plan, hw)
    per_tensor = weight_bytes(spec, plan)
    weights = sum(per_tensor.values())
    n_params = spec.n_params
    ctx, batch = wl.context_tokens, wl.concurrency
    kv_per_token = 2 * spec.n_layers * spec.n_kv_heads * spec.head_dim * kv_bytes_per_value
    kv = kv_per_token * ctx * batch
    ubatch = min(wl.prompt_tokens * batch, 512)
    activations = 4 * ubatch * (4 * spec.hidden_size + 2 * spec.intermediate_size
                                + spec.vocab_size + spec.n_heads * ctx)
    overhead = RUNTIME_BASE_BYTES[runtime] + activations
    if plan.backend == "gguf":
        meta = spec.metadata_bytes if spec.format is SourceFormat.GGUF else 0
        file_size = meta + sum(formats.padded(b, GGUF_TENSOR_ALIGNMENT)
                               for b in per_tensor.values())
    else:  # safetensors: tensors plus their JSON headers, one shard per decoder layer + 1
        sym = bool(plan.options.get("symmetric", True))
        entries = sum(stored_entries(plan.tensor_formats.get(t.canonical, t.dtype), sym)
                      for t in spec.tensors)
        file_size = (weights + entries * HEADER_BYTES_PER_ENTRY
                     + (spec.n_layers + 1) * SHARD_HEADER_BYTES)

    bw, flops, device, device_mem, notes = _rates(plan, hw, runtime)
    if runtime == "llama.cpp":
        from advisor.calibration.memory import llama_cpp_memory

        mem = llama_cpp_memory(spec, per_tensor, dict(plan.tensor_formats), file_size, ctx,
                               batch, wl.prompt_tokens, device.startswith("CPU"), hw.cpu.isa)
        kv, overhead = mem.kv, mem.overhead
        notes.append("memory as llama.cpp accounts it (advisor.calibration.memory): KV cache "
                     f"{mem.kv / 2**20:.1f} MiB, compute {mem.compute / 2**20:.1f} MiB, "
                     f"repacked weights {mem.repacked / 2**20:.1f} MiB, base "
                     f"{(mem.base + mem.mapped_extra) / 2**20:.1f} MiB")
    if runtime == "vllm" and device_mem is not None:
        from advisor.calibration.memory import VLLM_GPU_MEMORY_UTILIZATION, vllm_memory

        vm = vllm_memory(spec, ctx, batch, device_mem.value, kv_bytes_per_value)
        kv, overhead = vm.kv, vm.overhead
        device_mem = Figure(vm.reserved, BYTES, Origin.PREDICTED,
                            what=f"what vLLM takes: gpu_memory_utilization "
                                 f"{VLLM_GPU_MEMORY_UTILIZATION} x {device_mem.value / 2**30:.1f} "
                                 "GiB")
        notes.append("memory as vLLM accounts it (advisor.calibration.memory): weights, the "
                     f"profile run's activations {vm.activations / 2**20:.0f} MiB, non-torch "
                     f"{vm.base / 2**20:.0f} MiB (assumed), KV blocks of 16 tokens "
                     f"{vm.kv / 2**20:.0f} MiB; it fits when they fit in the "
                     f"{vm.reserved / 2**30:.1f} GiB vLLM takes")
    embedding = sum(per_tensor[t.canonical] for t in spec.tensors if t.role is Role.EMBEDDING)
    # Decode reads every weight once per step; the embedding table only one row per token,
    # unless it is tied and doubles as the LM head.
    read_per_step = weights - (0 if spec.tied_embeddings else embedding)
    mean_ctx = wl.prompt_tokens + wl.new_tokens / 2
    decode_bytes = read_per_step + kv_per_token * mean_ctx * batch
    matmul_params = n_params - sum(t.n_params for t in spec.tensors if t.role is Role.EMBEDDING)
    if spec.tied_embeddings:
        matmul_params += spec.vocab_size * spec.hidden_size
    attn_flops = 2 * spec.n_layers * spec.n_heads * spec.head_dim * wl.prompt_tokens ** 2
    features = {"layers": float(spec.n_layers), "decode_bytes": float(decode_bytes),
                "decode_flops": float(2 * matmul_params * batch),
                "prefill_flops": float((2 * matmul_params * wl.prompt_tokens + attn_flops) * batch),
                "prefill_bytes": float(read_per_step), "new_tokens": float(wl.new_tokens)}
    if plan.backend == "gguf":
        features.update(kernel_features(spec, plan, wl.prompt_tokens * batch,
                                        spec.n_layers * spec.n_heads * mean_ctx * batch))
    lat = _calibrated(spec, plan, hw, runtime, wl, decode_bytes, features["decode_flops"])
    if lat is None:
        lat = _roofline(spec, device, bw, flops, features)
        features.update(roofline_prefill=lat[0], roofline_decode=lat[1])
        if runtime == "llama.cpp" and device.startswith("CPU") and hw.source == "probed":
            lat = _on_this_host(lat, features)
    ttft, per_token, ttft_band, token_band, lat_notes = lat
    request = ttft + wl.new_tokens * per_token
    request_band = ((ttft_band[0] + wl.new_tokens * token_band[0],
                     ttft_band[1] + wl.new_tokens * token_band[1])
                    if ttft_band and token_band else None)
    notes += lat_notes + [
        f"KV cache at {8 * kv_bytes_per_value}-bit for {ctx} tokens x {batch} sequences",
        "requests of one batch arrive together (TTFT includes the whole batch's prefill)",
    ]
    return Estimate(
        plan_label=plan.label, plan_digest=plan.digest(), runtime=runtime, device=device,
        weights=_pred(weights, BYTES), kv_cache=_pred(kv, BYTES), overhead=_pred(overhead, BYTES),
        total_memory=_pred(weights + kv + overhead, BYTES), file_size=_pred(file_size, BYTES),
        bits_per_weight=8 * weights / max(n_params, 1),
        ttft=_pred(ttft, SECONDS, ttft_band), per_token=_pred(per_token, SECONDS, token_band),
        request_latency=_pred(request, SECONDS, request_band), device_memory=device_mem,
        assumptions=tuple(notes), workload=wl, features=features,
    )
