"""Labelled numbers: every figure the advisor reports says where it came from."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

# Units used across the project.
BYTES = "bytes"
BYTES_PER_S = "bytes/s"
SECONDS = "s"


class Origin(str, Enum):
    """Where a number comes from."""

    MEASURED = "measured"
    """Measured on this run, on this host."""
    PREDICTED = "predicted"
    """Computed by a model of the hardware or runtime (roofline, byte counts); not measured."""
    DATASHEET = "datasheet"
    """Taken from a vendor datasheet via a device profile."""
    REPORTED = "reported"
    """Read from the operating system or a driver (NVML, /proc/meminfo, sysctl)."""


@dataclass(frozen=True)
class Figure:
    """A number with its unit and origin; `what` says what it is where the name does not (a
    recommendation's memory: "peak RSS of the bench process above its interpreter baseline")."""

    value: float
    unit: str
    origin: Origin
    what: str = ""
    ci95: tuple[float, float] | None = None
    """The 95% confidence interval of a measured value (its error bar), where it has one."""
    band: tuple[float, float] | None = None
    """A predicted value's error band (low, high): where the validation of the model that made
    it puts the truth four times in five (advisor.calibration)."""

    def __post_init__(self) -> None:
        if not isinstance(self.origin, Origin):
            object.__setattr__(self, "origin", Origin(self.origin))
        if self.ci95 is not None:
            lo, hi = (float(x) for x in self.ci95)
            if not lo <= hi:
                raise ValueError(f"Figure.ci95 {self.ci95!r}: expected (low, high), low <= high")
            object.__setattr__(self, "ci95", (lo, hi))
        if self.band is not None:
            lo, hi = (float(x) for x in self.band)
            if not lo <= hi:
                raise ValueError(f"Figure.band {self.band!r}: expected (low, high), low <= high")
            object.__setattr__(self, "band", (lo, hi))

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"value": self.value, "unit": self.unit, "origin": self.origin.value}
        if self.what:
            d["what"] = self.what
        if self.ci95 is not None:
            d["ci95"] = list(self.ci95)
        if self.band is not None:
            d["band"] = list(self.band)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Figure:
        ci, band = d.get("ci95"), d.get("band")
        return cls(value=d["value"], unit=d.get("unit", ""), origin=Origin(d["origin"]),
                   what=str(d.get("what", "")), ci95=(ci[0], ci[1]) if ci else None,
                   band=(band[0], band[1]) if band else None)


# How a figure reads to a person (the CLI's tables and the TUI; rich markup for the origin).
def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.2f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def human_seconds(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:.0f} µs"
    if s < 1:
        return f"{s * 1e3:.1f} ms"
    return f"{s:.2f} s"


def fig(f: Figure | None) -> str:
    if f is None:
        return "-"
    if f.unit == BYTES:
        text = human_bytes(f.value)
    elif f.unit == BYTES_PER_S:
        text = f"{f.value / 1e9:,.1f} GB/s"
    elif f.unit == SECONDS:
        text = human_seconds(f.value)
    else:
        text = f"{f.value:,.4g} {f.unit}"
    if f.band is not None and f.unit == SECONDS:
        lo, hi = (human_seconds(x) for x in f.band)
        return f"{text} [dim]({f.origin.value}; 4 in 5 within {lo}-{hi})[/dim]"
    return f"{text} [dim]({f.origin.value})[/dim]"
