from __future__ import annotations

import pytest

from advisor.errors import BadInput
from advisor.estimate import Workload
from advisor.targets import Targets, parse_duration, parse_size


@pytest.mark.parametrize("text,expected", [
    ("24G", 24 * 2**30), ("512MiB", 512 * 2**20), ("1.5GB", 1_500_000_000), ("100000", 100000),
    ("2 TiB", 2 * 2**40), ("64k", 65536), ("1e3MB", 10**9),
])
def test_sizes(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["24Gbb", "-3G", "fast", "", "0", "G", "1.2.3G", "nanG"])
def test_bad_sizes(text: str) -> None:
    with pytest.raises(BadInput) as e:
        parse_size(text, "--vram")
    assert "--vram" in e.value.one_line()


@pytest.mark.parametrize("text,expected", [("3s", 3.0), ("250ms", 0.25), ("2", 2.0),
                                           ("1.5 min", 90.0), ("800us", 0.0008)])
def test_durations(text: str, expected: float) -> None:
    assert parse_duration(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["0s", "-1s", "fast", "3 lightyears", ""])
def test_bad_durations(text: str) -> None:
    with pytest.raises(BadInput):
        parse_duration(text, "--p95")


def test_targets_round_trip_and_validation() -> None:
    t = Targets(Workload(prompt_tokens=256, new_tokens=64, concurrency=2), vram_bytes=2**34,
                p95_s=3.0, max_kld=0.05)
    assert Targets.from_dict(t.to_dict()) == t
    with pytest.raises(ValueError, match="p95_s"):
        Targets(p95_s=0)
    with pytest.raises(ValueError, match="vram_bytes"):
        Targets(vram_bytes=-5)
