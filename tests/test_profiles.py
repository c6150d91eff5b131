"""The device catalogue: every entry loads, round-trips, and says where its figures come from."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import profiles
from advisor.errors import BadInput
from advisor.estimate import estimate
from advisor.figures import Origin
from advisor.hardware import Capability, HardwareProfile, Vendor
from advisor.inspect import inspect_model
from advisor.modelspec import ModelSpec
from advisor.probe import list_targets, load_target, serving_formats
from advisor.probe.catalogue import aliases_of, catalogue_listing, has_accelerator
from advisor.space.named import plan_for_format

REQUIRED = {
    "rtx3090", "rtx4090", "a10g", "l40s", "a100-40g", "a100-80g", "h100-sxm", "h200", "mi300x",
    "m2-pro", "m3-max", "rpi5", "jetson-orin", "x86-server",
}  # fmt: skip
# Issue 18, item 1: each device it names, as a user would type it -> the entry it must load.
ISSUE_DEVICES = {
    "T4": "t4", "L4": "l4", "A10": "a10", "A10G": "a10g", "A40": "a40", "RTX A6000": "rtx-a6000",
    "RTX 6000 Ada": "rtx6000-ada", "L40": "l40", "L40S": "l40s",
    "A100 40GB PCIe": "a100-40g-pcie", "A100 40GB SXM": "a100-40g",
    "A100 80GB PCIe": "a100-80g-pcie", "A100 80GB SXM": "a100-80g",
    "H100 PCIe": "h100-pcie", "H100 SXM": "h100-sxm", "H100 NVL": "h100-nvl", "H200": "h200",
    "B200": "b200", "GH200": "gh200", "RTX 3060": "rtx3060", "RTX 3080": "rtx3080",
    "RTX 3090": "rtx3090", "RTX 4060 Ti": "rtx4060ti", "RTX 4070": "rtx4070",
    "RTX 4080": "rtx4080", "RTX 4090": "rtx4090", "RTX 5090": "rtx5090",
    "Jetson Orin": "jetson-orin", "DGX Spark": "dgx-spark", "MI210": "mi210", "MI250": "mi250",
    "MI300X": "mi300x", "MI325X": "mi325x", "RX 7900 XTX": "rx7900xtx",
    "M1": "m1", "M1 Pro": "m1-pro", "M1 Max": "m1-max", "M1 Ultra": "m1-ultra",
    "M2": "m2", "M2 Pro": "m2-pro", "M2 Max": "m2-max", "M2 Ultra": "m2-ultra",
    "M3": "m3", "M3 Pro": "m3-pro", "M3 Max": "m3-max", "M3 Ultra": "m3-ultra",
    "M4": "m4", "M4 Pro": "m4-pro", "M4 Max": "m4-max",
    "Graviton": "graviton4", "EPYC": "epyc-9654", "Xeon": "xeon-8480", "Raspberry Pi 5": "rpi5",
    # the aliases the issue quotes, and the ones the README promises
    "4090": "rtx4090", "h100": "h100-sxm", "a100": "a100-80g", "m4-max": "m4-max",
    "spark": "dgx-spark", "a100 pcie": "a100-80g-pcie",
}  # fmt: skip
FIGURES = (
    "memory_bytes",
    "memory_bandwidth_GBps",
    "peak_tflops",
    "peak_tflops_fp16_accumulate",
    "host",
    "runtimes",
)
DEVICES = Path(profiles.__file__).parent / "devices"
NAMES = profiles.names()
HF_RUNTIME_FORMATS = {"W4A16", "W8A16", "W8A8-INT8", "W8A8-FP8", "NF4"}


def test_required_devices_are_catalogued() -> None:
    assert REQUIRED <= set(NAMES)
    assert len(NAMES) >= 40


@pytest.mark.parametrize("typed, name", sorted(ISSUE_DEVICES.items()))
def test_every_device_the_issue_names_is_catalogued(typed: str, name: str) -> None:
    assert profiles.load(typed)["name"] == name


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
    if has_accelerator(entry):  # the estimator falls back to fp16 for a missing GPU rate
        assert "fp16" in entry["peak_tflops"], name
    # Every figure has its source, and every source names a figure of the entry.
    present = {k for k in FIGURES if k in entry}
    assert present >= {"memory_bytes", "memory_bandwidth_GBps", "peak_tflops", "runtimes", "host"}
    assert set(entry["sources"]) == present, name
    for key in present:
        assert entry["sources"][key].strip(), f"{name}: no source for {key}"
    assert "GiB" in entry["sources"]["memory_bytes"], f"{name}: how is 'GB' read?"
    for path in entry.get("estimated", ()):
        top, _, dtype = path.partition(".")
        assert top in present and (not dtype or dtype in entry[top]), (name, path)
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


@pytest.mark.parametrize("name", NAMES)
def test_every_alias_loads_its_entry(name: str) -> None:
    entry = profiles.load(name)
    assert entry["aliases"], f"{name}: no alias"
    for alias in entry["aliases"]:
        assert load_target(alias).name == name
        assert load_target(alias.upper().replace(" ", "_")).name == name


def test_names_and_aliases_are_unambiguous() -> None:
    seen: dict[str, str] = {}
    for name in NAMES:
        entry = profiles.load(name)
        for label in [name, *entry.get("aliases", ()), *entry.get("device_names", ())]:
            key = re.sub(r"[^a-z0-9]", "", label.lower())
            assert seen.setdefault(key, name) == name, (
                f"{label!r} names both {seen[key]} and {name}"
            )


def test_an_unknown_name_gets_the_closest_ones_and_where_to_list_them() -> None:
    with pytest.raises(KeyError, match="h100-sxm"):
        profiles.load("tpu-v5")
    with pytest.raises(BadInput) as err:
        load_target("tpu-v5")
    line = err.value.one_line()
    assert "'tpu-v5'" in line and "advisor profiles" in line
    assert "\n" not in line and err.value.exit_code == 2
    with pytest.raises(BadInput, match="did you mean rtx4090"):
        load_target("rtx-4090x")  # a typo: the device it was meant to be, not all 54


def test_list_targets_covers_the_catalogue() -> None:
    assert [hw.name for hw in list_targets()] == NAMES


def test_every_json_file_is_an_entry_of_its_own_name() -> None:
    files = sorted(p.stem for p in DEVICES.glob("*.json"))
    assert files == NAMES
    for stem in files:
        entry = json.loads((DEVICES / f"{stem}.json").read_text())
        assert entry["name"] == stem
        gpu_vendor = entry["vendor"] in {"nvidia", "amd", "apple"}
        assert has_accelerator(entry) == (gpu_vendor and entry["kind"] != "cpu")


def test_device_name_matching_is_exact() -> None:
    for reported, name in [
        ("NVIDIA A100-SXM4-80GB", "a100-80g"),
        ("NVIDIA A100 80GB PCIe", "a100-80g-pcie"),
        ("NVIDIA A100-SXM4-40GB", "a100-40g"),
        ("NVIDIA A100-PCIE-40GB", "a100-40g-pcie"),
        ("NVIDIA H100 80GB HBM3", "h100-sxm"),
        ("NVIDIA H100 PCIe", "h100-pcie"),
        ("NVIDIA H100 NVL", "h100-nvl"),
        ("Apple M4 Max", "m4-max"),
    ]:
        entry = profiles.match_device(reported)
        assert entry is not None and entry["name"] == name
    assert profiles.match_device("NVIDIA GeForce RTX 4090 D") is None
    assert profiles.match_device("NVIDIA H200 NVL") is None
    # One name for two products (3080 10/12 GB; each half of an MI250): no borrowed figures.
    assert profiles.match_device("NVIDIA GeForce RTX 3080") is None
    assert profiles.match_device("AMD Instinct MI250X/MI250") is None


def test_a100_and_h100_variants_differ_where_their_datasheets_do() -> None:
    def bw(name: str) -> float:
        acc = load_target(name).primary
        assert acc is not None and acc.memory_bandwidth is not None
        return acc.memory_bandwidth.value / 1e9

    assert [
        bw(n) for n in ("a100-40g", "a100-40g-pcie", "a100-80g", "a100-80g-pcie")
    ] == pytest.approx([1555, 1555, 2039, 1935])
    h100s = ("h100-sxm", "h100-pcie", "h100-nvl")
    assert [bw(n) for n in h100s] == pytest.approx([3350, 2000, 3900])
    nvl = load_target("h100-nvl").primary
    assert nvl is not None and nvl.memory.value == 94 * 2**30
    assert "int4" not in nvl.peak_tflops  # Hopper has no INT4 tensor mode
    blackwell = load_target("b200").primary
    assert blackwell is not None and blackwell.has(Capability.FP8)
    assert blackwell.peak_tflops["fp4"].value == pytest.approx(9000)
    turing = load_target("t4").primary
    assert turing is not None and not turing.has(Capability.BF16)
    assert "bf16" not in turing.peak_tflops
    assert load_target("t4").runtimes["vllm"] == ("W4A16", "W8A16", "W8A8-INT8", "NF4")


def test_cpu_entries_of_gpu_vendors_have_no_accelerator() -> None:
    epyc = load_target("epyc-9654")
    assert profiles.load("epyc-9654")["vendor"] == "amd" and epyc.accelerators == ()
    assert epyc.runtimes == {"llama.cpp": ("gguf:*",)}
    assert epyc.cpu.memory_bandwidth is not None
    assert epyc.cpu.memory_bandwidth.value == pytest.approx(460.8e9)
    assert "amx" in load_target("xeon-8480").cpu.isa and "amx" not in epyc.cpu.isa
    assert "sve2" in load_target("graviton4").cpu.isa


def test_the_listing_carries_the_aliases(capsys: pytest.CaptureFixture[str]) -> None:
    from advisor.cli.console import show_profiles

    listing = catalogue_listing()
    assert [d["name"] for d in listing] == NAMES
    by_name = {d["name"]: d for d in listing}
    assert "4090" in by_name["rtx4090"]["aliases"] and "spark" in by_name["dgx-spark"]["aliases"]
    for d in listing:
        assert d["aliases"] == list(aliases_of(d["name"]))
        assert (
            HardwareProfile.from_dict({k: v for k, v in d.items() if k != "aliases"}).name
            == d["name"]
        )
    json.dumps(listing)
    show_profiles(list_targets())
    rows = {
        line.split()[1]: line
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("│")
    }
    assert set(NAMES) <= set(rows)
    assert "4090" in rows["rtx4090"] and "h100" in rows["h100-sxm"] and "spark" in rows["dgx-spark"]


@pytest.fixture(scope="module")
def spec() -> ModelSpec:
    return inspect_model("smollm2-135m")


@pytest.mark.parametrize("name", NAMES)
def test_estimates_run_on_every_device(spec: ModelSpec, name: str) -> None:
    hw = load_target(name)
    est = estimate(spec, plan_for_format(spec, "Q4_K_M"), hw)
    assert est.fits and 0 < est.per_token.value < 1 and est.ttft.value > 0
    for fmt in hw.runtimes.get("vllm", ()):  # every HF format the device serves
        assert estimate(spec, plan_for_format(spec, fmt), hw).per_token.value > 0


def test_package_data_ships_the_devices() -> None:
    text = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    line = re.search(r'^profiles\s*=\s*\[(.*)\]', text, re.M)
    assert line is not None
    shipped = {x.strip().strip('"') for x in line.group(1).split(",")}
    assert {"devices/*.json", "measurements/*.csv", "measurements/README.md"} <= shipped
