"""Pure functions: raw readings of a machine (text, driver values) -> hardware value types.

Nothing here touches the machine; `host.py` collects the readings, the tests replay recorded
ones from `tests/probe/readings/`. A GPU whose driver-reported name is catalogued gets that
entry's datasheet peak rates (and bandwidth where the driver gives none); otherwise its peak
rates stay empty.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from advisor.figures import Figure, Origin
from advisor.hardware import Accelerator, CpuInfo, Vendor, apple_capabilities
from advisor.probe.catalogue import (
    BYTES,
    BYTES_PER_S,
    bandwidth_figure,
    capabilities_for,
    datasheet_for,
    peak_figures,
)

# ISA features that decide which quantized CPU kernels run, in the order CpuInfo.isa lists them.
ISA_FLAGS = (
    "avx", "avx2", "fma", "f16c", "avx_vnni", "avx512f", "avx512_vnni", "avx512_bf16",
    "avx512_fp16", "amx", "neon", "fp16", "dotprod", "i8mm", "bf16", "sve", "sve2", "sme",
)  # fmt: skip
# /proc/cpuinfo "flags" (x86) and "Features" (arm64) names -> our names. AMX counts when the
# tile unit is there (amx_tile; amx_int8 and amx_bf16 come with it on every part so far).
_CPUINFO_FLAGS = {
    "avx": "avx", "avx2": "avx2", "fma": "fma", "f16c": "f16c", "avx_vnni": "avx_vnni",
    "avx512f": "avx512f", "avx512_vnni": "avx512_vnni", "avx512_bf16": "avx512_bf16",
    "avx512_fp16": "avx512_fp16", "amx_tile": "amx",
    "asimd": "neon", "asimdhp": "fp16", "asimddp": "dotprod", "i8mm": "i8mm", "bf16": "bf16",
    "sve": "sve", "sve2": "sve2", "sme": "sme",
}  # fmt: skip
# macOS `sysctl hw.optional.*` names -> our names.
_SYSCTL_FLAGS = {
    "hw.optional.neon": "neon", "hw.optional.AdvSIMD": "neon", "hw.optional.arm.FEAT_FP16": "fp16",
    "hw.optional.arm.FEAT_DotProd": "dotprod", "hw.optional.arm.FEAT_I8MM": "i8mm",
    "hw.optional.arm.FEAT_BF16": "bf16", "hw.optional.arm.FEAT_SME": "sme",
}  # fmt: skip
# arm64 /proc/cpuinfo has no model name: "CPU part" of implementer 0x41 (Arm Ltd.) names the core.
_ARM_PARTS = {
    "0xd03": "Cortex-A53", "0xd08": "Cortex-A72", "0xd0b": "Cortex-A76", "0xd0c": "Neoverse-N1",
    "0xd40": "Neoverse-V1", "0xd41": "Cortex-A78", "0xd42": "Cortex-A78AE", "0xd49": "Neoverse-N2",
    "0xd4f": "Neoverse-V2",
}  # fmt: skip
_KIB = 1024


def _pairs(text: str, sep: str = ":") -> list[tuple[str, str]]:
    out = []
    for line in text.splitlines():
        key, found, value = line.partition(sep)
        if found:
            out.append((key.strip(), value.strip()))
    return out


def is_sysctl(text: str) -> bool:
    """True for `sysctl -a` output (macOS), False for /proc/cpuinfo."""
    return re.search(r"^(hw|machdep)\.[\w.]+\s*:", text, re.MULTILINE) is not None


def parse_sysctl(text: str) -> dict[str, str]:
    """`sysctl -a` lines 'key: value' -> dict."""
    return dict(_pairs(text))


def parse_meminfo(text: str) -> tuple[int | None, int | None]:
    """/proc/meminfo -> (MemTotal, MemAvailable) in bytes; None where a field is missing."""
    fields = dict(_pairs(text))

    def kib(key: str) -> int | None:
        value = fields.get(key, "").split()
        return int(value[0]) * _KIB if value and value[0].isdigit() else None

    return kib("MemTotal"), kib("MemAvailable")


def _isa(flags: set[str], table: Mapping[str, str]) -> tuple[str, ...]:
    ours = {table[f] for f in flags if f in table}
    return tuple(f for f in ISA_FLAGS if f in ours)


def _cpuinfo_facts(text: str) -> tuple[str, tuple[str, ...], int, int]:
    """/proc/cpuinfo -> (model, isa, physical cores, logical cores)."""
    blocks = [dict(_pairs(b)) for b in re.split(r"\n\s*\n", text) if b.strip()]
    cpus = [b for b in blocks if "processor" in b]
    if not cpus:
        raise ValueError("not a /proc/cpuinfo text: no 'processor' entries")
    first = cpus[0]
    flags = set((first.get("flags") or first.get("Features") or "").split())
    model = first.get("model name")
    if model is None:
        board = next((b["Model"] for b in blocks if "Model" in b), None)
        core = _ARM_PARTS.get(first.get("CPU part", ""), f"CPU part {first.get('CPU part', '?')}")
        model = f"{board} ({core})" if board else core
    cores = {(b.get("physical id", "0"), b["core id"]) for b in cpus if "core id" in b}
    # arm64 has no 'core id' and no SMT on the parts we know: one core per processor entry.
    return model, _isa(flags, _CPUINFO_FLAGS), len(cores) or len(cpus), len(cpus)


def _sysctl_facts(fields: Mapping[str, str]) -> tuple[str, tuple[str, ...], int, int]:
    model = fields.get("machdep.cpu.brand_string", "unknown CPU")
    if fields.get("machdep.cpu.features"):  # Intel Macs
        # "AVX1.0" -> "avx"; the rest already use the Linux names once lower-cased.
        x86 = {f.lower().replace("1.0", "") for f in fields["machdep.cpu.features"].split()}
        x86 |= {f.lower() for f in fields.get("machdep.cpu.leaf7_features", "").split()}
        isa = _isa(x86, _CPUINFO_FLAGS)
    else:
        isa = _isa({k for k, v in fields.items() if v == "1"}, _SYSCTL_FLAGS)
    physical = int(fields.get("hw.physicalcpu", fields.get("hw.ncpu", "0")))
    logical = int(fields.get("hw.logicalcpu", fields.get("hw.ncpu", "0")))
    return model, isa, physical, logical


def cpu_from_readings(
    text: str,
    *,
    physical_cores: int | None = None,
    logical_cores: int | None = None,
    ram_total: int | None = None,
    ram_available: int | None = None,
    memory_bandwidth: Figure | None = None,
) -> CpuInfo:
    """The host CPU from /proc/cpuinfo or `sysctl -a` text plus psutil's numbers.

    psutil's core counts and RAM (when given) win over what the text says; RAM figures are
    Origin.REPORTED. Without `ram_total`, sysctl's hw.memsize or a MemTotal line in `text` is used.
    """
    if is_sysctl(text):
        fields = parse_sysctl(text)
        model, isa, physical, logical = _sysctl_facts(fields)
        memsize = fields.get("hw.memsize", "")
        text_ram = int(memsize) if memsize.isdigit() else None
    else:
        model, isa, physical, logical = _cpuinfo_facts(text)
        text_ram = parse_meminfo(text)[0]
    total = ram_total if ram_total is not None else text_ram
    if total is None:
        raise ValueError(
            "ram_total unknown: pass psutil's total or a text with hw.memsize/MemTotal"
        )
    return CpuInfo(
        model=model,
        physical_cores=physical_cores or physical,
        logical_cores=logical_cores or logical,
        isa=isa,
        ram_total=Figure(float(total), BYTES, Origin.REPORTED),
        ram_available=(
            Figure(float(ram_available), BYTES, Origin.REPORTED)
            if ram_available is not None
            else None
        ),
        memory_bandwidth=memory_bandwidth,
    )


# --- GPUs -------------------------------------------------------------------------------------

# Keys of an NVML reading: the pynvml call that produced each value.
NVML_NAME = "nvmlDeviceGetName"
NVML_MEMORY = "nvmlDeviceGetMemoryInfo"  # {"total", "free", "used"} in bytes
NVML_CC = "nvmlDeviceGetCudaComputeCapability"  # [major, minor]
NVML_BUS_WIDTH = "nvmlDeviceGetMemoryBusWidth"  # bits
NVML_MAX_MEM_CLOCK = "nvmlDeviceGetMaxClockInfo:NVML_CLOCK_MEM"  # MHz


def _datasheet(name: str, reported_bw: Figure | None) -> tuple[dict[str, Figure], Figure | None]:
    """Peak rates (and bandwidth when the driver gave none) of a catalogued device name."""
    entry = datasheet_for(name)
    if entry is None:
        return {}, reported_bw
    return peak_figures(entry), reported_bw or bandwidth_figure(entry)


def nvidia_from_nvml(reading: Mapping[str, Any]) -> Accelerator:
    """One NVIDIA GPU from its NVML values (keys: the NVML_* constants above).

    Bandwidth = bus width x max memory clock x 2 (double data rate: matches the datasheets of
    GDDR6/6X and HBM2e/3 parts alike, e.g. 5120 bit x 1593 MHz x 2 = 2,039 GB/s on A100 80GB).
    """
    name = reading[NVML_NAME]
    name = name.decode() if isinstance(name, bytes) else str(name)
    major, minor = reading[NVML_CC]
    cc = f"{int(major)}.{int(minor)}"
    bus, clock = reading.get(NVML_BUS_WIDTH), reading.get(NVML_MAX_MEM_CLOCK)
    bw = Figure(bus / 8 * clock * 1e6 * 2, BYTES_PER_S, Origin.REPORTED) if bus and clock else None
    peaks, bw = _datasheet(name, bw)
    return Accelerator(
        vendor=Vendor.NVIDIA,
        name=name,
        memory=Figure(float(reading[NVML_MEMORY]["total"]), BYTES, Origin.REPORTED),
        memory_bandwidth=bw,
        arch=cc,
        peak_tflops=peaks,
        capabilities=capabilities_for(Vendor.NVIDIA, cc),
    )


def _rocm_cards(output: str | Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """rocm-smi output (--json text, its parsed dict, or the plain text) -> card -> fields."""
    if isinstance(output, Mapping):
        return {k: dict(v) for k, v in output.items() if k.startswith("card")}
    if output.lstrip().startswith("{"):
        return _rocm_cards(json.loads(output))
    cards: dict[str, dict[str, str]] = {}
    # Plain text: "GPU[0]\t\t: Card Series: \t\tAMD Instinct MI300X VF"
    for m in re.finditer(r"^GPU\[(\d+)\]\s*:\s*([^:]+?)\s*:\s*(.*?)\s*$", output, re.MULTILINE):
        cards.setdefault(f"card{m.group(1)}", {})[m.group(2)] = m.group(3)
    return cards


def amd_from_rocm_smi(
    output: str | Mapping[str, Any], gfx_arch: str | None = None
) -> tuple[Accelerator, ...]:
    """AMD GPUs from `rocm-smi --showproductname --showmeminfo vram [--json]`.

    The gfx architecture comes from rocm-smi's "GFX Version" (recent ROCm), else from `gfx_arch`
    (torch's gcnArchName), else from the catalogue entry of the card's name.
    """
    accelerators = []
    for _, card in sorted(_rocm_cards(output).items()):
        if "VRAM Total Memory (B)" not in card:
            continue
        name = next(
            (
                card[k]
                for k in ("Card Series", "Card SKU", "Device Name")
                if card.get(k, "N/A") != "N/A"
            ),
            "AMD GPU",
        )
        entry = datasheet_for(name)
        arch = card.get("GFX Version") or gfx_arch or (entry or {}).get("arch")
        arch = arch.split(":")[0] if arch else None  # "gfx942:sramecc+:xnack-" -> "gfx942"
        peaks, bw = _datasheet(name, None)
        accelerators.append(
            Accelerator(
                vendor=Vendor.AMD,
                name=name,
                memory=Figure(float(card["VRAM Total Memory (B)"]), BYTES, Origin.REPORTED),
                memory_bandwidth=bw,
                arch=arch,
                peak_tflops=peaks,
                capabilities=capabilities_for(Vendor.AMD, arch),
            )
        )
    return tuple(accelerators)


def apple_from_sysctl(text: str) -> Accelerator:
    """The GPU of an Apple Silicon Mac from `sysctl -a`: unified memory (hw.memsize), Metal."""
    fields = parse_sysctl(text)
    brand = fields.get("machdep.cpu.brand_string", "")
    if not brand.startswith("Apple"):
        raise ValueError(f"not an Apple Silicon sysctl reading: brand_string {brand!r}")
    peaks, bw = _datasheet(brand, None)
    return Accelerator(
        vendor=Vendor.APPLE,
        name=brand,
        memory=Figure(float(fields["hw.memsize"]), BYTES, Origin.REPORTED),
        memory_bandwidth=bw,
        arch=brand.removeprefix("Apple ").strip(),
        peak_tflops=peaks,
        capabilities=apple_capabilities(),
        unified_memory=True,
    )
