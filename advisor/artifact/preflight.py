"""Pre-flight checks: free disk and memory against the estimate, before any heavy stage.

A quantization that runs out of disk after minutes, or a reference that pushes the host into
swap, fails late and unclearly; these checks fail first, with both numbers and the fix.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from advisor.errors import BadInput

DISK_MARGIN = 1.05  # 5 % over the estimate: file headers, a report, filesystem rounding
MEMORY_MARGIN = 1.10


def _mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


def _existing(path: Path) -> Path:
    p = Path(path).expanduser().absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def free_disk(path: Path) -> int:
    """Free bytes, for an unprivileged process, on the filesystem that will hold `path`."""
    return int(shutil.disk_usage(_existing(path)).free)


def available_memory() -> int:
    """Bytes of RAM the host can give without swapping (psutil's `available`)."""
    import psutil

    return int(psutil.virtual_memory().available)


def check_disk(path: Path, needed_bytes: int, what: str, free: int | None = None) -> None:
    """BadInput when the filesystem of `path` has less free space than `needed_bytes` (with a
    margin). `free` overrides the reading (tests)."""
    have = free_disk(path) if free is None else free
    need = int(needed_bytes * DISK_MARGIN)
    if have < need:
        where = _existing(path)
        raise BadInput(
            f"not enough free disk for {what}: {_mib(need)} needed (estimate + 5%), "
            f"{_mib(have)} free on the filesystem of {where}",
            "free some space there or pass an --out (or QUANT_ADVISOR_CACHE) on a larger disk")


def check_memory(needed_bytes: int, what: str, available: int | None = None) -> None:
    """BadInput when the host has less available RAM than `needed_bytes` (with a margin).
    `available` overrides the reading (tests)."""
    have = available_memory() if available is None else available
    need = int(needed_bytes * MEMORY_MARGIN)
    if have < need:
        raise BadInput(
            f"not enough free memory for {what}: {_mib(need)} needed (estimate + 10%), "
            f"{_mib(have)} available",
            "close other processes, or run on a host with more RAM")
