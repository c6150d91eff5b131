"""What the target machine is: probe this host, or load a catalogue device.

    get_hardware(None)        -> this host, probed (source "probed")
    get_hardware("h100")      -> the catalogue's h100-sxm (source "profile:h100-sxm")

Catalogue figures are Origin.DATASHEET (PREDICTED where the entry marks them estimated);
probed ones are REPORTED (OS, driver) or MEASURED (memory bandwidth).
"""

from __future__ import annotations

from pathlib import Path

from advisor.hardware import HardwareProfile
from advisor.probe.catalogue import list_targets, load_target
from advisor.probe.host import probe_host
from advisor.probe.runtimes import serving_formats

__all__ = ["get_hardware", "list_targets", "load_target", "probe_host", "serving_formats"]


def get_hardware(target: str | None, out_dir: Path | None = None) -> HardwareProfile:
    """The named catalogue device, or this host when `target` is None."""
    if target is None:
        return probe_host(out_dir)
    return load_target(target)
