"""`HardwareProfile`: what the target machine is and what it can serve.

Built either by probing this host (`advisor.probe`) or from a catalogue file (`profiles/`).
Capability checks are named predicates over compute capability / vendor, never inline constants.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from advisor.figures import Figure

SCHEMA_VERSION = 1


class Vendor(str, Enum):
    """Accelerator vendor."""

    NVIDIA = "nvidia"
    """CUDA GPUs, read through NVML."""
    AMD = "amd"
    """ROCm GPUs, read through torch.version.hip / rocm-smi."""
    APPLE = "apple"
    """Apple Silicon GPU (Metal), unified memory."""


class Capability(str, Enum):
    """Hardware features that decide which quantized kernels can run."""

    INT8_TENSOR_CORES = "int8_tensor_cores"
    """Integer matrix units for W8A8-INT8 (NVIDIA from sm_75; AMD CDNA; not Apple)."""
    BF16 = "bf16"
    """Native bfloat16 matmul (NVIDIA from sm_80)."""
    INT4_WEIGHT_KERNELS = "int4_weight_kernels"
    """Fast W4A16 kernels (Marlin/Machete on NVIDIA from sm_80; ROCm/Metal kernels elsewhere)."""
    FP8 = "fp8"
    """FP8 (E4M3) tensor cores: NVIDIA sm_89 / sm_90+, AMD MI300 (gfx942)."""
    METAL = "metal"
    """Apple Metal backend (llama.cpp, MLX)."""
    CUDA = "cuda"
    """A CUDA device (bitsandbytes, vLLM)."""
    ROCM = "rocm"
    """A ROCm device."""


# Compute capability thresholds, from NVIDIA's CUDA docs and llm-compressor's documented minimums.
_SM_INT8_TC = (7, 5)
_SM_AMPERE = (8, 0)
_SM_FP8 = (8, 9)
# AMD architectures with FP8 matrix cores (CDNA3 / RDNA4).
_AMD_FP8_ARCHS = ("gfx940", "gfx941", "gfx942", "gfx950", "gfx1200", "gfx1201")


def parse_compute_capability(cc: str) -> tuple[int, int]:
    """'8.9' -> (8, 9). Raises ValueError on anything else."""
    major, _, minor = cc.partition(".")
    if not major.isdigit() or not minor.isdigit():
        raise ValueError(f"compute capability {cc!r} is not of the form 'MAJOR.MINOR'")
    return int(major), int(minor)


def nvidia_capabilities(cc: str) -> tuple[Capability, ...]:
    """Features of an NVIDIA GPU from its compute capability."""
    sm = parse_compute_capability(cc)
    caps = [Capability.CUDA]
    if sm >= _SM_INT8_TC:
        caps.append(Capability.INT8_TENSOR_CORES)
    if sm >= _SM_AMPERE:
        caps += [Capability.BF16, Capability.INT4_WEIGHT_KERNELS]
    if sm >= _SM_FP8:
        caps.append(Capability.FP8)
    return tuple(caps)


def amd_capabilities(arch: str) -> tuple[Capability, ...]:
    """Features of an AMD GPU from its gfx architecture name (e.g. 'gfx942')."""
    base = arch.split(":")[0]
    caps = [Capability.ROCM, Capability.BF16, Capability.INT4_WEIGHT_KERNELS]
    if base.startswith("gfx9") or base.startswith("gfx11") or base.startswith("gfx12"):
        caps.append(Capability.INT8_TENSOR_CORES)
    if base in _AMD_FP8_ARCHS:
        caps.append(Capability.FP8)
    return tuple(caps)


def apple_capabilities() -> tuple[Capability, ...]:
    return (Capability.METAL, Capability.BF16, Capability.INT4_WEIGHT_KERNELS)


@dataclass(frozen=True)
class Accelerator:
    """One GPU (or Apple GPU sharing unified memory)."""

    vendor: Vendor
    name: str
    memory: Figure  # bytes
    memory_bandwidth: Figure | None = None  # bytes/s
    arch: str | None = None  # NVIDIA compute capability "8.9", AMD "gfx942", Apple chip "M3 Max"
    peak_tflops: dict[str, Figure] = field(default_factory=dict)  # dtype -> dense TFLOP/s (TOPS)
    capabilities: tuple[Capability, ...] = ()
    unified_memory: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "vendor", Vendor(self.vendor))
        object.__setattr__(self, "capabilities", tuple(Capability(c) for c in self.capabilities))

    def has(self, cap: Capability) -> bool:
        return cap in self.capabilities

    def to_dict(self) -> dict[str, Any]:
        return {
            "vendor": self.vendor.value,
            "name": self.name,
            "memory": self.memory.to_dict(),
            "memory_bandwidth": self.memory_bandwidth.to_dict() if self.memory_bandwidth else None,
            "arch": self.arch,
            "peak_tflops": {k: v.to_dict() for k, v in self.peak_tflops.items()},
            "capabilities": [c.value for c in self.capabilities],
            "unified_memory": self.unified_memory,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Accelerator:
        bw = d.get("memory_bandwidth")
        return cls(
            vendor=Vendor(d["vendor"]),
            name=d["name"],
            memory=Figure.from_dict(d["memory"]),
            memory_bandwidth=Figure.from_dict(bw) if bw else None,
            arch=d.get("arch"),
            peak_tflops={k: Figure.from_dict(v) for k, v in d.get("peak_tflops", {}).items()},
            capabilities=tuple(Capability(c) for c in d.get("capabilities", ())),
            unified_memory=bool(d.get("unified_memory", False)),
        )


@dataclass(frozen=True)
class CpuInfo:
    """The host CPU and its memory."""

    model: str
    physical_cores: int
    logical_cores: int
    isa: tuple[str, ...]  # flags that matter for quantized kernels (advisor.probe.readings)
    ram_total: Figure  # bytes
    ram_available: Figure | None = None  # bytes
    memory_bandwidth: Figure | None = None  # bytes/s
    peak_tflops: dict[str, Figure] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "physical_cores": self.physical_cores,
            "logical_cores": self.logical_cores,
            "isa": list(self.isa),
            "ram_total": self.ram_total.to_dict(),
            "ram_available": self.ram_available.to_dict() if self.ram_available else None,
            "memory_bandwidth": self.memory_bandwidth.to_dict() if self.memory_bandwidth else None,
            "peak_tflops": {k: v.to_dict() for k, v in self.peak_tflops.items()},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CpuInfo:
        def fig(key: str) -> Figure | None:
            return Figure.from_dict(d[key]) if d.get(key) else None

        return cls(
            model=d["model"],
            physical_cores=int(d["physical_cores"]),
            logical_cores=int(d["logical_cores"]),
            isa=tuple(d.get("isa", ())),
            ram_total=Figure.from_dict(d["ram_total"]),
            ram_available=fig("ram_available"),
            memory_bandwidth=fig("memory_bandwidth"),
            peak_tflops={k: Figure.from_dict(v) for k, v in d.get("peak_tflops", {}).items()},
        )


@dataclass(frozen=True)
class HardwareProfile:
    """A machine: its CPU, its accelerators, and the formats each runtime serves there.

    `source` is "probed" for this host, or "profile:NAME" for a catalogue entry.
    `runtimes` maps a runtime ("llama.cpp", "vllm", "transformers") to the formats it serves here.
    """

    name: str
    source: str
    cpu: CpuInfo
    accelerators: tuple[Accelerator, ...] = ()
    runtimes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    disk_free: Figure | None = None  # bytes, at the output directory
    notes: tuple[str, ...] = ()
    version: int = SCHEMA_VERSION

    @property
    def primary(self) -> Accelerator | None:
        """The accelerator that serves the model (the first one), or None for CPU-only hosts."""
        return self.accelerators[0] if self.accelerators else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "name": self.name,
            "source": self.source,
            "cpu": self.cpu.to_dict(),
            "accelerators": [a.to_dict() for a in self.accelerators],
            "runtimes": {k: list(v) for k, v in self.runtimes.items()},
            "disk_free": self.disk_free.to_dict() if self.disk_free else None,
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HardwareProfile:
        if d.get("version", SCHEMA_VERSION) != SCHEMA_VERSION:
            raise ValueError(f"HardwareProfile version {d.get('version')} != {SCHEMA_VERSION}")
        return cls(
            name=d["name"],
            source=d["source"],
            cpu=CpuInfo.from_dict(d["cpu"]),
            accelerators=tuple(Accelerator.from_dict(a) for a in d.get("accelerators", ())),
            runtimes={k: tuple(v) for k, v in d.get("runtimes", {}).items()},
            disk_free=Figure.from_dict(d["disk_free"]) if d.get("disk_free") else None,
            notes=tuple(d.get("notes", ())),
        )


def supports(hw: HardwareProfile, cap: Capability) -> bool:
    """True when the primary accelerator has the capability."""
    acc = hw.primary
    return acc is not None and acc.has(cap)


def supports_fp8(hw: HardwareProfile) -> bool:
    return supports(hw, Capability.FP8)


def supports_int8_tensor_cores(hw: HardwareProfile) -> bool:
    return supports(hw, Capability.INT8_TENSOR_CORES)


def supports_int4_weight_kernels(hw: HardwareProfile) -> bool:
    return supports(hw, Capability.INT4_WEIGHT_KERNELS)
