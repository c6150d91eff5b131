"""The embedded model's sensitivity table, measured once per test session.

Both tests/sensitivity and tests/search use it; their session fixtures share a disk cache under
the session's base temp directory, so the table is measured once however the tests are split.
"""

from __future__ import annotations

import logging
import time

import pytest

from advisor.sensitivity import SensitivityTable, sensitivity_table

log = logging.getLogger(__name__)


def embedded_table(tmp_path_factory: pytest.TempPathFactory) -> SensitivityTable:
    cache = tmp_path_factory.getbasetemp() / "sensitivity-cache"
    t0 = time.perf_counter()
    progress: list[tuple[int, int]] = []
    table = sensitivity_table("smollm2-135m", cache_dir=cache,
                              on_progress=lambda d, n: progress.append((d, n)))
    log.info("embedded sensitivity table: %.1f s (measured in %.1f s)",
             time.perf_counter() - t0, table.seconds)
    assert progress and progress[-1][0] == progress[-1][1]
    return table
