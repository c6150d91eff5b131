"""Catalogue entries (`profiles/devices/*.json`) as `HardwareProfile`s and datasheet figures.

A figure listed in an entry's `estimated` (a top-level key such as "peak_tflops", a dotted path
such as "peak_tflops.fp16", or "host") was computed rather than read off a vendor sheet: it gets
Origin.PREDICTED; every other catalogue figure gets Origin.DATASHEET. A `host` block marked
`nominal` describes a typical host, not the device, and is PREDICTED as well.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import profiles
from advisor.errors import BadInput
from advisor.figures import BYTES, BYTES_PER_S, Figure, Origin
from advisor.hardware import (
    Accelerator,
    Capability,
    CpuInfo,
    HardwareProfile,
    Vendor,
    amd_capabilities,
    apple_capabilities,
    nvidia_capabilities,
)

_GB = 1e9  # bandwidths are quoted in decimal GB/s
_INT_DTYPES = ("int8", "int4")


def capabilities_for(vendor: Vendor, arch: str | None) -> tuple[Capability, ...]:
    """Capabilities from vendor and arch, through the named predicates of advisor.hardware."""
    if vendor is Vendor.NVIDIA:
        return nvidia_capabilities(arch) if arch else (Capability.CUDA,)
    if vendor is Vendor.AMD:
        return amd_capabilities(arch) if arch else (Capability.ROCM,)
    return apple_capabilities()


def rate_unit(dtype: str) -> str:
    """Integer rates are operations, float rates FLOPs (both per second, in units of 1e12)."""
    return "TOPS" if dtype in _INT_DTYPES else "TFLOP/s"


def _origin(entry: Mapping[str, Any], path: str) -> Origin:
    estimated = set(entry.get("estimated", ()))
    if path in estimated or path.split(".")[0] in estimated:
        return Origin.PREDICTED
    return Origin.DATASHEET


def peak_figures(entry: Mapping[str, Any]) -> dict[str, Figure]:
    """dtype -> dense peak rate of a catalogue entry, each with its origin."""
    return {
        dtype: Figure(float(v), rate_unit(dtype), _origin(entry, f"peak_tflops.{dtype}"))
        for dtype, v in entry.get("peak_tflops", {}).items()
    }


def bandwidth_figure(entry: Mapping[str, Any]) -> Figure | None:
    gbps = entry.get("memory_bandwidth_GBps")
    if gbps is None:
        return None
    return Figure(float(gbps) * _GB, BYTES_PER_S, _origin(entry, "memory_bandwidth_GBps"))


def has_accelerator(entry: Mapping[str, Any]) -> bool:
    """Entries of GPU vendors describe an accelerator; 'arm'/'intel' entries and every entry of
    kind 'cpu' (an AMD EPYC is vendor 'amd') are CPU-only hosts."""
    return entry["vendor"] in {v.value for v in Vendor} and entry.get("kind") != "cpu"


def _accelerator(entry: Mapping[str, Any]) -> Accelerator:
    vendor = Vendor(entry["vendor"])
    return Accelerator(
        vendor=vendor,
        name=entry["display_name"],
        memory=Figure(float(entry["memory_bytes"]), BYTES, _origin(entry, "memory_bytes")),
        memory_bandwidth=bandwidth_figure(entry),
        arch=entry.get("arch"),
        peak_tflops=peak_figures(entry),
        capabilities=capabilities_for(vendor, entry.get("arch")),
        unified_memory=bool(entry.get("unified_memory", False)),
    )


def _cpu(entry: Mapping[str, Any], accelerated: bool) -> CpuInfo:
    host = entry["host"]
    host_origin = Origin.PREDICTED if host.get("nominal") else _origin(entry, "host")
    # Without a separate RAM figure the host's memory is the entry's own (CPU-only or unified).
    if "ram_bytes" in host:
        ram = Figure(float(host["ram_bytes"]), BYTES, host_origin)
    else:
        ram = Figure(float(entry["memory_bytes"]), BYTES, _origin(entry, "memory_bytes"))
    if "memory_bandwidth_GBps" in host:
        bw: Figure | None = Figure(
            float(host["memory_bandwidth_GBps"]) * _GB, BYTES_PER_S, host_origin
        )
    elif not accelerated or entry.get("unified_memory"):
        bw = bandwidth_figure(entry)
    else:
        bw = None
    return CpuInfo(
        model=host["cpu_model"],
        physical_cores=int(host["physical_cores"]),
        logical_cores=int(host["logical_cores"]),
        isa=tuple(host.get("isa", ())),
        ram_total=ram,
        memory_bandwidth=bw,
        peak_tflops=_cpu_peaks(entry, accelerated),
    )


def _cpu_peaks(entry: Mapping[str, Any], accelerated: bool) -> dict[str, Figure]:
    """The CPU's peak rates: the host block's where it lists them (a system-on-chip whose
    top-level peaks are its GPU's), else the entry's own for a CPU-only entry."""
    host = entry["host"]
    if "peak_tflops" not in host:
        return {} if accelerated else peak_figures(entry)
    origin = (Origin.PREDICTED if host.get("nominal")
              else _origin(entry, "host.peak_tflops"))
    return {dtype: Figure(float(v), rate_unit(dtype), origin)
            for dtype, v in host["peak_tflops"].items()}


def profile_from_entry(entry: Mapping[str, Any]) -> HardwareProfile:
    """A catalogue entry as a HardwareProfile with source 'profile:NAME'."""
    accelerated = has_accelerator(entry)
    return HardwareProfile(
        name=entry["name"],
        source=f"profile:{entry['name']}",
        cpu=_cpu(entry, accelerated),
        accelerators=(_accelerator(entry),) if accelerated else (),
        runtimes={k: tuple(v) for k, v in entry.get("runtimes", {}).items()},
        notes=tuple(entry.get("notes", ())),
    )


def load_target(name: str) -> HardwareProfile:
    """The named catalogue device (names and aliases are case-insensitive)."""
    try:
        entry = profiles.load(name)
    except KeyError:
        import difflib

        known = sorted({*profiles.names(), *(a for n in profiles.names() for a in aliases_of(n))})
        close = difflib.get_close_matches(name.lower(), known, n=3, cutoff=0.5)
        raise BadInput(
            f"unknown hardware profile {name!r}"
            + (f"; did you mean {', '.join(close)}?" if close else ""),
            "`advisor profiles` lists the devices and the aliases --target accepts",
        ) from None
    return profile_from_entry(entry)


def aliases_of(name: str) -> tuple[str, ...]:
    """The aliases `--target` accepts for a catalogue device besides its name (e.g. '4090')."""
    return tuple(profiles.load(name).get("aliases", ()))


def catalogue_listing() -> list[dict[str, Any]]:
    """`advisor profiles --json`: every device's profile with the aliases it answers to."""
    return [{**hw.to_dict(), "aliases": list(aliases_of(hw.name))} for hw in list_targets()]


def list_targets() -> list[HardwareProfile]:
    """Every catalogue device, sorted by name."""
    return [profile_from_entry(profiles.load(n)) for n in profiles.names()]


def datasheet_for(device_name: str) -> Mapping[str, Any] | None:
    """The catalogue entry for a driver-reported device name, or None when it is not catalogued."""
    return profiles.match_device(device_name)
