"""The reference log-prob cache is written through a memory map, where a full disk is a SIGBUS
with no message (issue 22): its bytes are checked against the free space, then reserved, before
any is written; running out is one BadInput line and leaves nothing behind."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest

from advisor.errors import BadInput
from advisor.measure.quality.cache import CacheWriter
from advisor.textdata import WindowConfig

CFG = WindowConfig(n_ctx=16)
TOKENS = np.zeros((3, 16), np.int32)
VOCAB = 1000  # 3 windows x 7 scored positions x 1000 x 2 bytes = 42,000 bytes of codes


def test_a_disk_without_room_is_refused_before_anything_is_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import advisor.artifact.preflight as preflight

    asked: list[Path] = []

    def free(path: Path) -> int:
        asked.append(Path(path))
        return 40_000

    monkeypatch.setattr(preflight, "free_disk", free)
    with pytest.raises(BadInput) as e:
        CacheWriter(tmp_path / "quality-ref", "k", TOKENS, VOCAB, CFG)
    line = e.value.one_line()
    assert "not enough free disk for the reference log-probs of 3 windows" in line
    assert "QUANT_ADVISOR_CACHE" in line and "\n" not in line
    assert asked == [tmp_path / "quality-ref"]
    assert list((tmp_path / "quality-ref").iterdir()) == []  # no half-written cache


def test_blocks_that_cannot_be_reserved_are_refused_and_removed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not hasattr(os, "posix_fallocate"):
        pytest.skip("no posix_fallocate on this platform")

    def full(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(BadInput, match="could not be reserved"):
        CacheWriter(tmp_path, "k", TOKENS, VOCAB, CFG)
    assert list(tmp_path.iterdir()) == []


def test_room_enough_reserves_the_whole_map(tmp_path: Path) -> None:
    w = CacheWriter(tmp_path, "k", TOKENS, VOCAB, CFG)
    try:
        codes = w.tmp / "codes.npy"
        assert codes.stat().st_size >= 3 * CFG.n_scored * VOCAB * 2
        assert codes.stat().st_blocks * 512 >= 3 * CFG.n_scored * VOCAB * 2  # allocated
    finally:
        w.abort()
    assert list(tmp_path.iterdir()) == []
