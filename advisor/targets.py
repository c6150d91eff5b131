"""`Targets`: the workload and the limits a deployment must meet; size and duration parsing."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from advisor.errors import BadInput
from advisor.estimate import Workload

SCHEMA_VERSION = 1

# Decimal (SI) and binary (IEC) units; a bare "G" means GiB, as `nvidia-smi` and `free -h` show it.
_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 1 << 10, "kib": 1 << 10, "kb": 10**3,
    "m": 1 << 20, "mib": 1 << 20, "mb": 10**6,
    "g": 1 << 30, "gib": 1 << 30, "gb": 10**9,
    "t": 1 << 40, "tib": 1 << 40, "tb": 10**12,
}
_DURATION_UNITS = {"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "min": 60.0}
_NUMBER = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([a-zA-Zµ]*)\s*$")


UNITS = ("K/M/G/T and KiB/MiB/GiB/TiB are powers of 1024, KB/MB/GB/TB powers of 1000, a bare "
         "number is bytes")
"""How sizes read (as `nvidia-smi` and llama.cpp print GPU memory: `24G` is 24 GiB)."""


def parse_size(text: str, what: str = "size") -> int:
    """'24G' -> 25769803776, '512MiB', '1.5GB', '100000' (bytes). Raises BadInput."""
    m = _NUMBER.match(str(text))
    unit = m.group(2).lower() if m else ""
    if not m or unit not in _SIZE_UNITS:
        raise BadInput(f"{what} {text!r} is not a size",
                       f"write a positive number with a unit, e.g. 24G, 512MiB, 1.5GB ({UNITS})")
    value = float(m.group(1)) * _SIZE_UNITS[unit]
    if not math.isfinite(value) or value < 1:
        raise BadInput(f"{what} {text!r} must be at least one byte", "e.g. 24G")
    return int(value)


def parse_duration(text: str, what: str = "duration") -> float:
    """'3s' -> 3.0, '250ms' -> 0.25; a bare number is seconds. Raises BadInput."""
    m = _NUMBER.match(str(text))
    unit = (m.group(2).lower() or "s") if m else ""
    if not m or unit not in _DURATION_UNITS:
        raise BadInput(f"{what} {text!r} is not a duration",
                       "write a positive number with a unit, e.g. 3s, 250ms")
    value = float(m.group(1)) * _DURATION_UNITS[unit]
    if not math.isfinite(value) or value <= 0:
        raise BadInput(f"{what} {text!r} must be longer than zero", "e.g. 3s or 250ms")
    return value


@dataclass(frozen=True)
class Targets:
    """Workload plus limits; a limit left at None is not enforced."""

    workload: Workload = field(default_factory=Workload)
    vram_bytes: int | None = None  # accelerator memory budget
    mem_bytes: int | None = None  # host RAM budget (CPU runtimes)
    max_size_bytes: int | None = None  # artifact size
    p95_s: float | None = None  # request latency, 95th percentile
    max_kld: float | None = None  # mean KL divergence vs the reference
    version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        for name in ("vram_bytes", "mem_bytes", "max_size_bytes"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < 1):
                raise ValueError(f"Targets.{name}={v!r}; expected a positive integer or None")
        for name in ("p95_s", "max_kld"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, (int, float)) and v > 0 and math.isfinite(v)):
                raise ValueError(f"Targets.{name}={v!r}; expected a positive number or None")

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "workload": self.workload.to_dict(),
            "vram_bytes": self.vram_bytes,
            "mem_bytes": self.mem_bytes,
            "max_size_bytes": self.max_size_bytes,
            "p95_s": self.p95_s,
            "max_kld": self.max_kld,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Targets:
        if d.get("version", SCHEMA_VERSION) != SCHEMA_VERSION:
            raise ValueError(f"Targets version {d.get('version')} != {SCHEMA_VERSION}")
        w = d.get("workload", {})
        return cls(
            workload=Workload(prompt_tokens=w.get("prompt_tokens", 512),
                              new_tokens=w.get("new_tokens", 128),
                              concurrency=w.get("concurrency", 1), context=w.get("context", 0)),
            vram_bytes=d.get("vram_bytes"), mem_bytes=d.get("mem_bytes"),
            max_size_bytes=d.get("max_size_bytes"), p95_s=d.get("p95_s"),
            max_kld=d.get("max_kld"),
        )
