"""The device catalogue: one JSON file per device under `devices/`, and its loader.

Hardware facts are data here, never constants in code. This package imports nothing of the
project (standard library only); `advisor.probe` turns an entry into a `HardwareProfile`.

Names are matched loosely: case, spaces, dashes and underscores are ignored, so "RTX 4090",
"rtx-4090" and "4090" (an alias) all find `rtx4090`.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from typing import Any

_DEVICES = "devices"


def _key(name: str) -> str:
    """'GeForce RTX-4090' -> 'geforcertx4090': the form names and aliases are compared in."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _read_all() -> dict[str, dict[str, Any]]:
    folder = resources.files(__name__).joinpath(_DEVICES)
    entries: dict[str, dict[str, Any]] = {}
    for item in folder.iterdir():
        if item.name.endswith(".json"):
            entry = json.loads(item.read_text(encoding="utf-8"))
            stem = item.name[: -len(".json")]
            if entry.get("name") != stem:
                raise ValueError(
                    f"profiles/devices/{item.name}: name {entry.get('name')!r} != {stem!r}"
                )
            entries[stem] = entry
    return entries


def names() -> list[str]:
    """The catalogue's device names, sorted (the file stems, e.g. 'h100-sxm')."""
    return sorted(_read_all())


def _resolve(name: str, entries: dict[str, dict[str, Any]]) -> str | None:
    wanted = _key(name)
    for stem, entry in entries.items():
        if wanted == _key(stem) or wanted in {_key(a) for a in entry.get("aliases", ())}:
            return stem
    return None


def load(name: str) -> dict[str, Any]:
    """The catalogue entry for a device name or alias (case-insensitive).

    Raises KeyError naming the known devices when nothing matches.
    """
    entries = _read_all()
    stem = _resolve(name, entries)
    if stem is None:
        raise KeyError(f"unknown device {name!r}; known: {', '.join(sorted(entries))}")
    return entries[stem]


def match_device(device_name: str) -> dict[str, Any] | None:
    """The entry whose `device_names` holds a driver-reported name, e.g. 'NVIDIA A100-SXM4-80GB'.

    Exact match after normalisation only: 'NVIDIA GeForce RTX 4090 D' or 'NVIDIA H100 PCIe' must
    not borrow the figures of a different product.
    """
    wanted = _key(device_name)
    for entry in _read_all().values():
        if wanted in {_key(n) for n in entry.get("device_names", ())}:
            return entry
    return None


_MEASUREMENTS = "measurements"


def measurements(runtime: str) -> list[dict[str, str]]:
    """Published measurements of one runtime ('llama.cpp' or 'vllm'), one dict per CSV row of
    `measurements/<runtime>.csv`, every row with its source URL. The latency model of
    `advisor.calibration` is fitted to them; `measurements/README.md` says what each column is."""
    import csv
    import io

    item = resources.files(__name__).joinpath(_MEASUREMENTS, f"{runtime}.csv")
    if not item.is_file():
        raise KeyError(f"no published measurements of {runtime!r} in profiles/{_MEASUREMENTS}")
    rows = list(csv.DictReader(io.StringIO(item.read_text(encoding="utf-8"))))
    for i, row in enumerate(rows, start=2):
        if not row.get("source_url", "").startswith("https://"):
            raise ValueError(f"profiles/{_MEASUREMENTS}/{runtime}.csv line {i}: no source_url")
    return rows
