import time

import numpy as np

from advisor.stageclock import StageClock


def test_stage_records_seconds_and_a_peak_that_sees_an_allocation() -> None:
    clock = StageClock(interval=0.01)
    with clock.stage("idle"):
        time.sleep(0.05)
    with clock.stage("alloc"):
        block = np.ones(64 * 2**20, dtype=np.uint8)  # 64 MiB, touched
        time.sleep(0.05)
        del block
    assert clock.seconds["idle"] >= 0.05
    assert clock.peak_rss["alloc"] >= clock.peak_rss["idle"] + 48 * 2**20


def test_a_repeated_stage_accumulates_time() -> None:
    clock = StageClock(interval=0.01)
    for _ in range(2):
        with clock.stage("s"):
            time.sleep(0.03)
    assert clock.seconds["s"] >= 0.06
