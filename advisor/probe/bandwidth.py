"""A quick MEASURED host memory bandwidth: copy arrays much larger than the caches, best of a few.

Counts bytes read plus bytes written (STREAM "copy" convention). Several threads copy their own
slices at once (numpy releases the GIL while copying), since one core cannot saturate a
multi-channel memory system and CPU inference uses every core.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from advisor.figures import Figure, Origin

DEFAULT_BYTES = 128 * 2**20
"""Per array; two are allocated. Well above the last-level cache of common CPUs (Intel server L3
is about 100 MB per socket); on stacked-cache parts (AMD X3D, Genoa-X) the result reads high.
Larger arrays cost more first-touch time than the ~0.5 s this measurement may take."""
DEFAULT_BUDGET_S = 0.4


def measure_memory_bandwidth(
    nbytes: int = DEFAULT_BYTES,
    *,
    repeats: int = 5,
    budget_s: float = DEFAULT_BUDGET_S,
    threads: int | None = None,
) -> Figure:
    """Best-of-`repeats` copy bandwidth in bytes/s, stopping early once `budget_s` is spent.

    The budget counts from the call (allocation and first touch included); at least two timed
    copies run whatever the budget.
    """
    if nbytes < 2**20:
        raise ValueError(f"nbytes={nbytes} is too small to measure memory rather than cache")
    start = time.perf_counter()
    workers = max(1, threads or min(os.cpu_count() or 1, 8))
    n = nbytes // 8
    src = np.empty(n, dtype=np.float64)
    dst = np.empty_like(src)
    bounds = np.linspace(0, n, workers + 1, dtype=np.int64)
    slices = [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]

    def touch(s: slice) -> None:  # fault the pages in now (in parallel), not in a timed copy
        src[s] = 1.0
        dst[s] = 0.0

    def copy(s: slice) -> None:
        np.copyto(dst[s], src[s])

    best = float("inf")
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(touch, slices))
        for i in range(max(repeats, 2)):
            t0 = time.perf_counter()
            list(pool.map(copy, slices))
            best = min(best, time.perf_counter() - t0)
            if i >= 1 and time.perf_counter() - start > budget_s:
                break
    return Figure(2 * n * 8 / best, "bytes/s", Origin.MEASURED)
