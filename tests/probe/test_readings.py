"""Probe parsers on recorded readings of real device types (see readings/README.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from advisor.figures import Figure, Origin
from advisor.hardware import Capability, Vendor
from advisor.probe.readings import (
    NVML_BUS_WIDTH,
    amd_from_rocm_smi,
    apple_from_sysctl,
    cpu_from_readings,
    is_sysctl,
    nvidia_from_nvml,
    parse_meminfo,
)
from advisor.probe.runtimes import serving_formats

READINGS = Path(__file__).parent / "readings"
GiB = 2**30


def text(name: str) -> str:
    return (READINGS / name).read_text()


def nvml(name: str) -> dict[str, Any]:
    return json.loads(text(name))


# --- NVIDIA -----------------------------------------------------------------------------------


def test_a100_has_bf16_and_int4_but_not_fp8() -> None:
    acc = nvidia_from_nvml(nvml("nvml_a100_sxm4_80gb.json"))
    assert acc.vendor is Vendor.NVIDIA and acc.name == "NVIDIA A100-SXM4-80GB"
    assert acc.arch == "8.0"
    assert acc.memory == Figure(81920 * 2**20, "bytes", Origin.REPORTED)
    assert acc.has(Capability.BF16) and acc.has(Capability.INT4_WEIGHT_KERNELS)
    assert acc.has(Capability.INT8_TENSOR_CORES) and not acc.has(Capability.FP8)
    # 5120-bit bus x 1593 MHz x 2 = the datasheet's 2,039 GB/s, read from the driver.
    assert acc.memory_bandwidth is not None and acc.memory_bandwidth.origin is Origin.REPORTED
    assert acc.memory_bandwidth.value == pytest.approx(2039e9, rel=1e-3)
    # Catalogued name: datasheet peak rates.
    assert acc.peak_tflops["bf16"] == Figure(312.0, "TFLOP/s", Origin.DATASHEET)
    assert "fp8" not in acc.peak_tflops


def test_h100_has_fp8() -> None:
    acc = nvidia_from_nvml(nvml("nvml_h100_sxm5.json"))
    assert acc.arch == "9.0" and acc.memory.value == 81559 * 2**20
    assert acc.has(Capability.FP8) and acc.has(Capability.BF16)
    assert acc.memory_bandwidth is not None
    assert acc.memory_bandwidth.value == pytest.approx(3.35e12, rel=2e-3)
    assert acc.peak_tflops["fp8"].value == pytest.approx(1979.0)
    assert acc.peak_tflops["fp8"].origin is Origin.DATASHEET
    assert "W8A8-FP8" in serving_formats(acc)["vllm"]


def test_rtx4090_has_fp8() -> None:
    acc = nvidia_from_nvml(nvml("nvml_rtx4090.json"))
    assert acc.name == "NVIDIA GeForce RTX 4090" and acc.arch == "8.9"
    assert acc.has(Capability.FP8) and acc.has(Capability.INT4_WEIGHT_KERNELS)
    assert acc.memory.value == 24564 * 2**20
    assert acc.memory_bandwidth is not None
    assert acc.memory_bandwidth.value == pytest.approx(1008e9, rel=1e-3)
    assert acc.peak_tflops["fp16"].value == pytest.approx(165.2)


def test_t4_has_int8_tensor_cores_only() -> None:
    acc = nvidia_from_nvml(nvml("nvml_t4.json"))
    assert acc.name == "Tesla T4" and acc.arch == "7.5" and acc.memory.value == 15360 * 2**20
    assert acc.has(Capability.CUDA) and acc.has(Capability.INT8_TENSOR_CORES)
    assert not acc.has(Capability.BF16)
    assert not acc.has(Capability.FP8)
    assert not acc.has(Capability.INT4_WEIGHT_KERNELS)
    assert acc.memory_bandwidth is not None
    assert acc.memory_bandwidth.value == pytest.approx(320e9, rel=1e-3)
    assert acc.peak_tflops["int8"].value == 130  # the catalogue's datasheet rates (t4.json)
    renamed = {**nvml("nvml_t4.json"), "nvmlDeviceGetName": "NVIDIA Uncatalogued X"}
    assert nvidia_from_nvml(renamed).peak_tflops == {}  # not catalogued: no invented rates
    vllm = serving_formats(acc)["vllm"]
    assert "W8A8-INT8" in vllm and "W8A8-FP8" not in vllm and "NF4" in vllm


def test_nvml_without_bus_width_falls_back_to_the_datasheet() -> None:
    reading = nvml("nvml_a100_sxm4_80gb.json")
    del reading[NVML_BUS_WIDTH]
    acc = nvidia_from_nvml(reading)
    assert acc.memory_bandwidth == Figure(2039e9, "bytes/s", Origin.DATASHEET)
    uncatalogued = {**nvml("nvml_t4.json"), "nvmlDeviceGetName": "NVIDIA Uncatalogued X"}
    del uncatalogued[NVML_BUS_WIDTH]
    assert nvidia_from_nvml(uncatalogued).memory_bandwidth is None


def test_nvml_name_as_bytes() -> None:
    """Older pynvml returns bytes for the device name."""
    reading = nvml("nvml_rtx4090.json")
    reading["nvmlDeviceGetName"] = reading["nvmlDeviceGetName"].encode()
    assert nvidia_from_nvml(reading).name == "NVIDIA GeForce RTX 4090"


# --- AMD --------------------------------------------------------------------------------------


def test_mi300x_from_rocm_smi_json() -> None:
    accs = amd_from_rocm_smi(text("rocm_smi_mi300x.json"))
    assert len(accs) == 2
    acc = accs[0]
    assert acc.vendor is Vendor.AMD and acc.name == "AMD Instinct MI300X" and acc.arch == "gfx942"
    assert acc.memory == Figure(205822885888.0, "bytes", Origin.REPORTED)
    assert (
        acc.has(Capability.FP8)
        and acc.has(Capability.ROCM)
        and acc.has(Capability.INT8_TENSOR_CORES)
    )
    assert not acc.has(Capability.CUDA)
    assert acc.memory_bandwidth == Figure(5300e9, "bytes/s", Origin.DATASHEET)
    assert acc.peak_tflops["fp8"].value == pytest.approx(2614.9)
    formats = serving_formats(acc)
    assert "W8A8-FP8" in formats["vllm"] and "W8A8-INT8" in formats["vllm"]
    assert "NF4" not in formats["vllm"] and "transformers" not in formats


def test_mi300x_vf_from_plain_rocm_smi_text_without_gfx_version() -> None:
    (acc,) = amd_from_rocm_smi(text("rocm_smi_mi300x_vf.txt"))
    assert acc.name == "AMD Instinct MI300X VF" and acc.memory.value == 205822885888
    assert acc.arch == "gfx942"  # from the catalogue entry of the name
    assert acc.has(Capability.FP8)


def test_rocm_gfx_arch_from_torch_when_rocm_smi_has_none() -> None:
    card = {"card0": {"Card Series": "Radeon RX 7900 XTX", "VRAM Total Memory (B)": "25753026560"}}
    (acc,) = amd_from_rocm_smi(card, gfx_arch="gfx1100")
    assert acc.arch == "gfx1100" and acc.has(Capability.INT8_TENSOR_CORES)
    assert not acc.has(Capability.FP8) and acc.peak_tflops == {}


# --- Apple ------------------------------------------------------------------------------------


def test_m3_max_from_sysctl() -> None:
    reading = text("sysctl_m3_max.txt")
    assert is_sysctl(reading)
    acc = apple_from_sysctl(reading)
    assert acc.vendor is Vendor.APPLE and acc.name == "Apple M3 Max" and acc.arch == "M3 Max"
    assert acc.unified_memory and acc.has(Capability.METAL) and not acc.has(Capability.CUDA)
    assert acc.memory == Figure(128.0 * GiB, "bytes", Origin.REPORTED)
    assert acc.memory_bandwidth is not None and acc.memory_bandwidth.value == pytest.approx(400e9)
    assert acc.peak_tflops["fp32"].origin is Origin.PREDICTED  # Apple publishes no TFLOPS
    assert serving_formats(acc) == {"llama.cpp": ("gguf:*",)}


def test_apple_cpu_from_sysctl() -> None:
    cpu = cpu_from_readings(text("sysctl_m3_max.txt"))
    assert cpu.model == "Apple M3 Max" and cpu.physical_cores == 16 and cpu.logical_cores == 16
    assert cpu.isa == ("neon", "fp16", "dotprod", "i8mm", "bf16")  # FEAT_SME is 0 on M3
    assert cpu.ram_total == Figure(128.0 * GiB, "bytes", Origin.REPORTED)


def test_intel_mac_sysctl_is_not_apple_silicon() -> None:
    with pytest.raises(ValueError, match="not an Apple Silicon"):
        apple_from_sysctl("machdep.cpu.brand_string: Intel(R) Core(TM) i9-9980HK\nhw.memsize: 1\n")


# --- CPUs -------------------------------------------------------------------------------------


def test_x86_avx512_server_cpuinfo() -> None:
    cpu = cpu_from_readings(text("cpuinfo_x86_sapphire_rapids.txt"), ram_total=32 * GiB,
                            ram_available=30 * GiB)  # fmt: skip
    assert cpu.model == "Intel(R) Xeon(R) Platinum 8488C"
    assert cpu.physical_cores == 4 and cpu.logical_cores == 8  # 4 cores x 2 threads
    for flag in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx", "avx_vnni"):
        assert flag in cpu.isa
    assert "neon" not in cpu.isa and "amx_tile" not in cpu.isa
    assert cpu.ram_total == Figure(32.0 * GiB, "bytes", Origin.REPORTED)
    assert cpu.ram_available is not None and cpu.ram_available.value == 30 * GiB


def test_psutil_numbers_win_over_the_text() -> None:
    cpuinfo = text("cpuinfo_x86_sapphire_rapids.txt")
    cpu = cpu_from_readings(cpuinfo, physical_cores=2, logical_cores=3, ram_total=GiB)
    assert (cpu.physical_cores, cpu.logical_cores) == (2, 3)


def test_raspberry_pi5_cpuinfo_and_meminfo() -> None:
    total, available = parse_meminfo(text("meminfo_rpi5.txt"))
    assert total == 8245280 * 1024 and available == 7598032 * 1024
    cpu = cpu_from_readings(text("cpuinfo_rpi5.txt"), ram_total=total)
    assert cpu.model == "Raspberry Pi 5 Model B Rev 1.0 (Cortex-A76)"
    assert cpu.physical_cores == 4 and cpu.logical_cores == 4
    assert cpu.isa == ("neon", "fp16", "dotprod")  # A76: no i8mm, no SVE
    assert "avx2" not in cpu.isa


def test_graviton3_cpuinfo_has_sve_and_i8mm() -> None:
    cpu = cpu_from_readings(text("cpuinfo_graviton3.txt") + "\n" + text("meminfo_rpi5.txt"))
    assert cpu.model == "Neoverse-V1" and cpu.logical_cores == 8
    assert {"neon", "dotprod", "i8mm", "bf16", "sve"} <= set(cpu.isa) and "sve2" not in cpu.isa
    assert cpu.ram_total.value == 8245280 * 1024  # MemTotal found in the text


def test_ram_is_required() -> None:
    with pytest.raises(ValueError, match="ram_total"):
        cpu_from_readings(text("cpuinfo_rpi5.txt"))
    with pytest.raises(ValueError, match="cpuinfo"):
        cpu_from_readings("hello", ram_total=1)
