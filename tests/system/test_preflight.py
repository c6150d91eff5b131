"""Pre-flight checks: free disk and memory against the estimate, with both numbers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from advisor.artifact.preflight import available_memory, check_disk, check_memory, free_disk
from advisor.errors import BadInput


def test_disk_check_reads_the_real_filesystem(tmp_path: Path) -> None:
    check_disk(tmp_path / "not" / "yet", 1, "a tiny file")  # the nearest existing parent counts
    free = free_disk(tmp_path)
    assert free > 0
    with pytest.raises(BadInput) as e:
        check_disk(tmp_path, free * 2, "twice the free space")
    msg = e.value.one_line()
    assert "twice the free space" in msg and str(tmp_path) in msg
    needed, have = (float(x.replace(",", "")) for x in re.findall(r"([\d,.]+) MiB", msg))
    assert needed == pytest.approx(free * 2 * 1.05 / 2**20, rel=1e-3)
    assert have == pytest.approx(free / 2**20, rel=0.05)  # other processes write meanwhile


def test_disk_check_on_a_full_filesystem() -> None:
    # /proc reports no free blocks: a real filesystem on which nothing fits
    with pytest.raises(BadInput, match=r"needed .* 0\.0 MiB free on the filesystem of /proc"):
        check_disk(Path("/proc/advisor"), 10 * 2**20, "the model")


def test_disk_check_with_a_given_reading(tmp_path: Path) -> None:
    check_disk(tmp_path, 100, "x", free=106)
    with pytest.raises(BadInput, match=r"x: 0\.0 MiB needed .* 0\.0 MiB free"):
        check_disk(tmp_path, 100, "x", free=104)


def test_memory_check() -> None:
    avail = available_memory()
    assert avail > 0
    check_memory(1, "one byte")
    with pytest.raises(BadInput, match=r"not enough free memory for a petabyte: .* available"):
        check_memory(2**50, "a petabyte")
    with pytest.raises(BadInput, match=r"1,126\.4 MiB needed .* 1,000\.0 MiB available"):
        check_memory(2**30, "a GiB", available=1000 * 2**20)


@pytest.mark.slow
def test_f16_reference_creation_is_refused_on_a_full_disk(tmp_path: Path,
                                                          embedded_gguf: Path) -> None:
    """A real 1 MiB tmpfs as the cache: the embedded model's F16 copy (269 MB) cannot fit, and
    the refusal comes before llama.cpp writes anything."""
    import subprocess

    from advisor.errors import BadInput
    from backends.gguf import make_f16_reference

    cache = tmp_path / "small"
    cache.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(cache)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        with pytest.raises(BadInput) as e:
            make_f16_reference(embedded_gguf, cache_dir=cache)
        msg = e.value.one_line()
        assert "F16 reference" in msg and "MiB" in msg
        assert not any((cache / "references").iterdir())
    finally:
        subprocess.run(["umount", str(cache)], check=False)
