"""The live probe on this machine, and the public entry points of advisor.probe."""

from __future__ import annotations

from pathlib import Path

import pytest

from advisor.errors import BadInput
from advisor.figures import Origin
from advisor.hardware import Accelerator, Capability, HardwareProfile, Vendor
from advisor.probe import get_hardware, probe_host
from advisor.probe.bandwidth import measure_memory_bandwidth
from advisor.probe.host import disk_free, nvml_readings
from advisor.probe.runtimes import serving_formats


def _has_nvidia_gpu() -> bool:
    return bool(nvml_readings()[0])


@pytest.fixture(scope="module")
def probed(tmp_path_factory: pytest.TempPathFactory) -> HardwareProfile:
    return probe_host(tmp_path_factory.mktemp("out") / "not" / "yet" / "there")


def test_probe_reports_this_host(probed: HardwareProfile) -> None:
    assert probed.source == "probed"
    assert probed.cpu.physical_cores > 0 and probed.cpu.logical_cores >= probed.cpu.physical_cores
    assert probed.cpu.ram_total.origin is Origin.REPORTED and probed.cpu.ram_total.value > 2**28
    assert probed.cpu.ram_available is not None
    assert 0 < probed.cpu.ram_available.value <= probed.cpu.ram_total.value
    assert probed.disk_free is not None and probed.disk_free.value > 0
    assert probed.runtimes["llama.cpp"] == ("gguf:*",)
    assert HardwareProfile.from_dict(probed.to_dict()) == probed


def test_probe_measures_bandwidth(probed: HardwareProfile) -> None:
    bw = probed.cpu.memory_bandwidth
    assert bw is not None and bw.origin is Origin.MEASURED and bw.unit == "bytes/s"
    assert 1e8 < bw.value < 5e13


@pytest.mark.skipif(_has_nvidia_gpu(), reason="this host has an NVIDIA GPU")
def test_cpu_only_host_has_no_accelerator(probed: HardwareProfile) -> None:
    assert probed.accelerators == () and probed.primary is None
    assert probed.runtimes == {"llama.cpp": ("gguf:*",)}
    assert any("no accelerator" in n for n in probed.notes)


def test_probe_without_bandwidth_measurement() -> None:
    assert probe_host(measure_bandwidth=False).cpu.memory_bandwidth is None


def test_bandwidth_measurement_is_quick_and_positive() -> None:
    import time

    t0 = time.perf_counter()
    bw = measure_memory_bandwidth(64 * 2**20, repeats=3)
    assert time.perf_counter() - t0 < 5.0
    assert bw.origin is Origin.MEASURED and bw.value > 1e8
    with pytest.raises(ValueError, match="too small"):
        measure_memory_bandwidth(1024)


def test_disk_free_walks_up_to_an_existing_parent(tmp_path: Path) -> None:
    fig = disk_free(tmp_path / "a" / "b" / "c")
    assert fig.origin is Origin.REPORTED and fig.value > 0


def test_get_hardware_dispatches() -> None:
    assert get_hardware("rtx4090").source == "profile:rtx4090"
    with pytest.raises(BadInput, match="advisor profiles"):
        get_hardware("no-such-gpu")


def test_serving_formats_rules() -> None:
    def nv(cc: str) -> Accelerator:
        from advisor.figures import Figure
        from advisor.hardware import nvidia_capabilities

        return Accelerator(Vendor.NVIDIA, "x", Figure(1.0, "bytes", Origin.REPORTED), arch=cc,
                           capabilities=nvidia_capabilities(cc))  # fmt: skip

    assert serving_formats(None) == {"llama.cpp": ("gguf:*",)}
    assert serving_formats(nv("6.1")) == {"llama.cpp": ("gguf:*",)}  # Pascal: no vLLM
    assert serving_formats(nv("7.0"))["vllm"] == ("NF4",)
    assert serving_formats(nv("8.6"))["vllm"] == ("W4A16", "W8A16", "W8A8-INT8", "NF4")
    assert serving_formats(nv("9.0"))["transformers"] == (
        "W4A16",
        "W8A16",
        "W8A8-INT8",
        "W8A8-FP8",
        "NF4",
    )
    assert Capability.CUDA in nv("7.0").capabilities
