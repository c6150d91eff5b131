"""Live collection of this host's readings; `readings.py` turns them into value types.

Every source is optional: a missing driver, library or tool means "not there", recorded as a
note on the profile, never an error. No accelerator is a normal result.
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any

from advisor.figures import Figure, Origin
from advisor.hardware import Accelerator, HardwareProfile
from advisor.probe.bandwidth import measure_memory_bandwidth
from advisor.probe.readings import (
    NVML_BUS_WIDTH,
    NVML_CC,
    NVML_MAX_MEM_CLOCK,
    NVML_MEMORY,
    NVML_NAME,
    amd_from_rocm_smi,
    apple_from_sysctl,
    cpu_from_readings,
    nvidia_from_nvml,
    parse_meminfo,
)
from advisor.probe.runtimes import serving_formats

log = logging.getLogger(__name__)

_TOOL_TIMEOUT_S = 30
_CGROUP_MEMORY_MAX = Path("/sys/fs/cgroup/memory.max")


def _run(*argv: str) -> str | None:
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=_TOOL_TIMEOUT_S, check=True
        )
    except (OSError, subprocess.SubprocessError) as exc:
        log.info("%s failed: %s", argv[0], exc)
        return None
    return done.stdout


def is_apple_silicon() -> bool:
    return platform.system() == "Darwin" and platform.machine() == "arm64"


def cpu_text() -> str:
    """/proc/cpuinfo on Linux, `sysctl -a` on macOS, a minimal stand-in elsewhere."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        return cpuinfo.read_text(encoding="utf-8", errors="replace")
    if platform.system() == "Darwin":
        text = _run("sysctl", "-a")
        if text:
            return text
    return f"processor\t: 0\nmodel name\t: {platform.processor() or platform.machine()}\n"


def _cgroup_memory_limit() -> int | None:
    try:
        raw = _CGROUP_MEMORY_MAX.read_text().strip()
    except OSError:
        return None
    return int(raw) if raw.isdigit() else None  # "max" means no limit


def memory_numbers() -> dict[str, int | None]:
    """Core counts and RAM from psutil (fallback: os.cpu_count and /proc/meminfo)."""
    try:
        import psutil
    except ImportError:
        total, available = None, None
        meminfo = Path("/proc/meminfo")
        if meminfo.exists():
            total, available = parse_meminfo(meminfo.read_text())
        return {"physical_cores": None, "logical_cores": os.cpu_count(),
                "ram_total": total, "ram_available": available}  # fmt: skip
    vm = psutil.virtual_memory()
    return {
        "physical_cores": psutil.cpu_count(logical=False),
        "logical_cores": psutil.cpu_count(logical=True),
        "ram_total": int(vm.total),
        "ram_available": int(vm.available),
    }


def nvml_readings() -> tuple[list[dict[str, Any]], str | None]:
    """One NVML reading per NVIDIA GPU, or ([], why) when NVML is absent or fails."""
    try:
        import pynvml
    except ImportError:
        return [], "NVML not available: nvidia-ml-py is not installed"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return [], f"no NVIDIA GPU: NVML could not start ({exc})"
    try:
        readings = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
            reading: dict[str, Any] = {
                NVML_NAME: pynvml.nvmlDeviceGetName(handle),
                NVML_MEMORY: {
                    "total": int(mem.total),
                    "free": int(mem.free),
                    "used": int(mem.used),
                },
                NVML_CC: list(pynvml.nvmlDeviceGetCudaComputeCapability(handle)),
            }
            # Not supported on every board (e.g. Jetson): bandwidth then comes from the catalogue.
            try:
                reading[NVML_BUS_WIDTH] = int(pynvml.nvmlDeviceGetMemoryBusWidth(handle))
                reading[NVML_MAX_MEM_CLOCK] = int(
                    pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_MEM)
                )
            except (pynvml.NVMLError, AttributeError) as exc:
                log.info("NVML memory bus/clock not available for GPU %d: %s", index, exc)
            readings.append(reading)
        return readings, None
    except pynvml.NVMLError as exc:
        return [], f"no NVIDIA GPU: NVML failed ({exc})"
    finally:
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError as exc:
            log.info("nvmlShutdown failed: %s", exc)


def _torch_rocm_cards() -> dict[str, dict[str, str]]:
    """ROCm GPUs as torch sees them, in rocm-smi's JSON shape; {} without a ROCm torch."""
    try:
        import torch
    except ImportError:
        return {}
    if not getattr(torch.version, "hip", None) or not torch.cuda.is_available():
        return {}
    cards = {}
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        cards[f"card{i}"] = {
            "Card Series": props.name,
            "VRAM Total Memory (B)": str(props.total_memory),
            "GFX Version": getattr(props, "gcnArchName", ""),
        }
    return cards


def rocm_accelerators() -> tuple[tuple[Accelerator, ...], str | None]:
    """AMD GPUs from rocm-smi (when on PATH), else from a ROCm torch (when /dev/kfd exists)."""
    exe = shutil.which("rocm-smi")
    if exe is not None:
        out = _run(exe, "--showproductname", "--showmeminfo", "vram", "--json")
        if out:
            try:
                accs = amd_from_rocm_smi(out)
            except ValueError as exc:
                return (), f"rocm-smi output not understood: {exc}"
            if accs and all(a.arch for a in accs):
                return accs, None
            torch_cards = _torch_rocm_cards()  # older rocm-smi has no "GFX Version"
            arch = next(iter(torch_cards.values()), {}).get("GFX Version") or None
            return amd_from_rocm_smi(out, gfx_arch=arch), None
    if Path("/dev/kfd").exists():
        return amd_from_rocm_smi(_torch_rocm_cards()), None
    return (), None


def disk_free(out_dir: Path) -> Figure:
    """Free bytes on the file system of `out_dir`, or of its nearest existing parent."""
    path = out_dir.expanduser().absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return Figure(float(shutil.disk_usage(path).free), "bytes", Origin.REPORTED)


def probe_host(out_dir: Path | None = None, measure_bandwidth: bool = True) -> HardwareProfile:
    """This machine as a HardwareProfile (source "probed")."""
    notes: list[str] = []
    text = cpu_text()
    numbers = memory_numbers()
    limit = _cgroup_memory_limit()
    if limit is not None and numbers["ram_total"] is not None and limit < numbers["ram_total"]:
        notes.append(f"RAM capped at the cgroup memory limit of {limit} bytes")
        numbers["ram_total"] = limit
        numbers["ram_available"] = min(numbers["ram_available"] or limit, limit)
    bandwidth = measure_memory_bandwidth() if measure_bandwidth else None
    cpu = cpu_from_readings(text, memory_bandwidth=bandwidth, **numbers)

    accelerators: list[Accelerator] = []
    readings, why = nvml_readings()
    accelerators += [nvidia_from_nvml(r) for r in readings]
    notes += [why] if why and not readings else []
    amd, why = rocm_accelerators()
    accelerators += amd
    notes += [why] if why else []
    if is_apple_silicon():
        accelerators.append(apple_from_sysctl(text))
    if not accelerators:
        notes.append("no accelerator found: CPU only")
    return HardwareProfile(
        name=platform.node() or "localhost",
        source="probed",
        cpu=cpu,
        accelerators=tuple(accelerators),
        runtimes=serving_formats(accelerators[0] if accelerators else None),
        disk_free=disk_free(out_dir if out_dir is not None else Path.cwd()),
        notes=tuple(notes),
    )
