"""The device catalogue: every entry loads, round-trips, and says where its figures come from."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import profiles
from advisor.errors import BadInput
from advisor.figures import Origin
from advisor.hardware import Capability, HardwareProfile, Vendor
from advisor.probe import list_targets, load_target, serving_formats
from advisor.probe.catalogue import has_accelerator

REQUIRED = {
    "rtx3090", "rtx4090", "a10g", "l40s", "a100-40g", "a100-80g", "h100-sxm", "h200", "mi300x",
    "m2-pro", "m3-max", "rpi5", "jetson-orin", "x86-server",
}  # fmt: skip
DEVICES = Path(profiles.__file__).parent / "devices"
NAMES = profiles.names()
HF_RUNTIME_FORMATS = {"W4A16", "W8A16", "W8A8-INT8", "W8A8-FP8", "NF4"}


def test_required_devices_are_catalogued() -> None:
    assert REQUIRED <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_entry_loads_and_round_trips(name: str) -> None:
    hw = load_target(name)
    assert hw.name == name
    assert hw.source == f"profile:{name}"
    assert HardwareProfile.from_dict(hw.to_dict()) == hw
    assert HardwareProfile.from_dict(json.loads(json.dumps(hw.to_dict()))) == hw
    assert hw.cpu.physical_cores > 0 and hw.cpu.logical_cores >= hw.cpu.physical_cores
    assert hw.cpu.ram_total.value > 0


@pytest.mark.parametrize("name", NAMES)
def test_entry_has_required_fields_and_sources(name: str) -> None:
    entry = profiles.load(name)
    assert entry["kind"] in {"gpu", "soc", "cpu"}
    assert entry["vendor"] in {"nvidia", "amd", "apple", "arm", "intel"}
    assert entry["memory_bytes"] > 2**30 and entry["memory_bandwidth_GBps"] > 1
    assert entry["peak_tflops"], "every device has at least one peak rate"
    for key in ("memory_bytes", "memory_bandwidth_GBps", "peak_tflops", "runtimes", "host"):
        assert entry["sources"].get(key), f"{name}: no source for {key}"
    # Every estimated figure is named in its source text as an estimate or nominal.
    for path in entry.get("estimated", ()):
        source = entry["sources"][path.split(".")[0]]
        assert "ESTIMATE" in source or "nominal" in source or "estimate" in source.lower(), path


@pytest.mark.parametrize("name", NAMES)
def test_runtimes_match_the_serving_rule(name: str) -> None:
    """The JSON's runtimes are what advisor.probe.runtimes derives from the device: no drift."""
    hw = load_target(name)
    assert hw.runtimes == serving_formats(hw.primary)
    assert hw.runtimes["llama.cpp"] == ("gguf:*",)
    for runtime, formats in hw.runtimes.items():
        if runtime != "llama.cpp":
            assert set(formats) <= HF_RUNTIME_FORMATS


def test_figures_are_labelled_datasheet_or_predicted() -> None:
    h100 = load_target("h100-sxm").primary
    assert h100 is not None
    assert h100.memory.value == 80 * 2**30 and h100.memory.origin is Origin.DATASHEET
    assert h100.memory_bandwidth is not None and h100.memory_bandwidth.value == pytest.approx(
        3.35e12
    )
    assert h100.peak_tflops["bf16"].value == pytest.approx(989.5)
    assert h100.peak_tflops["fp8"].unit == "TFLOP/s" and h100.peak_tflops["int8"].unit == "TOPS"
    assert all(f.origin is Origin.DATASHEET for f in h100.peak_tflops.values())
    # The nominal host of a discrete GPU is not a datasheet fact.
    assert load_target("h100-sxm").cpu.ram_total.origin is Origin.PREDICTED
    # A10G has no public datasheet: its rates are estimates.
    a10g = load_target("a10g").primary
    assert a10g is not None and a10g.peak_tflops["fp16"].origin is Origin.PREDICTED
    # Jetson: INT8 from the datasheet, FP16 estimated from it.
    orin = load_target("jetson-orin").primary
    assert orin is not None
    assert orin.peak_tflops["int8"].origin is Origin.DATASHEET
    assert orin.peak_tflops["fp16"].origin is Origin.PREDICTED


def test_capabilities_follow_the_architecture() -> None:
    caps = {
        n: load_target(n).primary for n in ("a100-80g", "rtx4090", "h100-sxm", "mi300x", "m3-max")
    }
    a100, ada, hopper, mi300x, m3 = caps.values()
    assert a100 is not None and a100.has(Capability.BF16) and not a100.has(Capability.FP8)
    assert ada is not None and ada.has(Capability.FP8)
    assert hopper is not None and hopper.has(Capability.FP8)
    assert mi300x is not None and mi300x.vendor is Vendor.AMD and mi300x.has(Capability.FP8)
    assert m3 is not None and m3.has(Capability.METAL) and m3.unified_memory


def test_runtimes_of_typical_devices() -> None:
    assert "W8A8-FP8" in load_target("h100-sxm").runtimes["vllm"]
    assert "W8A8-FP8" not in load_target("a100-80g").runtimes["vllm"]
    assert "NF4" not in load_target("mi300x").runtimes["vllm"]
    assert set(load_target("mi300x").runtimes["vllm"]) >= {"W8A8-FP8", "W8A8-INT8"}
    for cpu_or_apple in ("m3-max", "m2-pro", "rpi5", "x86-server"):
        assert load_target(cpu_or_apple).runtimes == {"llama.cpp": ("gguf:*",)}


def test_cpu_only_entries_put_their_figures_on_the_cpu() -> None:
    server = load_target("x86-server")
    assert server.accelerators == ()
    assert "amx" in server.cpu.isa and "avx512_vnni" in server.cpu.isa
    assert server.cpu.memory_bandwidth is not None
    assert server.cpu.memory_bandwidth.value == pytest.approx(307.2e9)
    assert server.cpu.peak_tflops["bf16"].origin is Origin.PREDICTED
    pi = load_target("rpi5")
    assert pi.accelerators == () and "dotprod" in pi.cpu.isa and "i8mm" not in pi.cpu.isa
    assert pi.cpu.ram_total.value == 8 * 2**30


@pytest.mark.parametrize(
    "alias, name",
    [("4090", "rtx4090"), ("RTX 4090", "rtx4090"), ("H100", "h100-sxm"), ("a100", "a100-80g"),
     ("A100-40GB", "a100-40g"), ("M3 Max", "m3-max"), ("mi300x", "mi300x"),
     ("Raspberry Pi 5", "rpi5"), ("AGX Orin", "jetson-orin"), ("X86_SERVER", "x86-server")],
)  # fmt: skip
def test_aliases_are_case_insensitive(alias: str, name: str) -> None:
    assert profiles.load(alias)["name"] == name
    assert load_target(alias).name == name


def test_names_and_aliases_are_unambiguous() -> None:
    seen: dict[str, str] = {}
    for name in NAMES:
        entry = profiles.load(name)
        for label in [name, *entry.get("aliases", ()), *entry.get("device_names", ())]:
            key = re.sub(r"[^a-z0-9]", "", label.lower())
            assert seen.setdefault(key, name) == name, (
                f"{label!r} names both {seen[key]} and {name}"
            )


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(KeyError, match="h100-sxm"):
        profiles.load("tpu-v5")
    with pytest.raises(BadInput) as err:
        load_target("tpu-v5")
    line = err.value.one_line()
    assert "'tpu-v5'" in line and "rtx4090" in line and "advisor profiles" in line
    assert "\n" not in line and err.value.exit_code == 2


def test_list_targets_covers_the_catalogue() -> None:
    assert [hw.name for hw in list_targets()] == NAMES


def test_every_json_file_is_an_entry_of_its_own_name() -> None:
    files = sorted(p.stem for p in DEVICES.glob("*.json"))
    assert files == NAMES
    for stem in files:
        entry = json.loads((DEVICES / f"{stem}.json").read_text())
        assert entry["name"] == stem
        assert has_accelerator(entry) == (entry["vendor"] in {"nvidia", "amd", "apple"})


def test_device_name_matching_is_exact() -> None:
    for reported, name in [
        ("NVIDIA A100-SXM4-80GB", "a100-80g"),
        ("NVIDIA H100 80GB HBM3", "h100-sxm"),
    ]:
        entry = profiles.match_device(reported)
        assert entry is not None and entry["name"] == name
    assert profiles.match_device("NVIDIA H100 PCIe") is None
    assert profiles.match_device("NVIDIA GeForce RTX 4090 D") is None
    assert profiles.match_device("NVIDIA A100 80GB PCIe") is None


def test_package_data_ships_the_devices() -> None:
    text = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    assert re.search(r'profiles\s*=\s*\[\s*"devices/\*\.json"\s*\]', text)
