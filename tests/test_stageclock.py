import subprocess
import sys
import time

from advisor.stageclock import StageClock


def test_stage_records_seconds_and_a_peak_that_sees_a_child_allocation() -> None:
    """The peak covers the process tree: a child that holds 128 MiB during the stage shows up
    (this process's own RSS may not grow on a new allocation: freed pages are reused)."""
    clock = StageClock(interval=0.01)
    with clock.stage("idle"):
        time.sleep(0.05)
    code = ("import numpy as np, time; b = np.ones(128 * 2**20, dtype=np.uint8); "
            "print('held', flush=True); time.sleep(0.5)")
    with clock.stage("alloc"):
        child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        time.sleep(0.1)
        child.wait()
    assert clock.seconds["idle"] >= 0.05
    assert clock.peak_rss["alloc"] >= clock.peak_rss["idle"] + 100 * 2**20


def test_a_repeated_stage_accumulates_time() -> None:
    clock = StageClock(interval=0.01)
    for _ in range(2):
        with clock.stage("s"):
            time.sleep(0.03)
    assert clock.seconds["s"] >= 0.06
