"""Atomic artifact directories: complete or absent, report.json last, --out checks."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest

from advisor.artifact import (
    PARTIAL_INFIX,
    REPORT_FILE,
    REPORT_SCHEMA_VERSION,
    is_complete,
    staging,
    write_report,
)
from advisor.errors import AdvisorError, BadInput


def _make(out: Path, payload: str, force: bool = False) -> None:
    with staging(out, force=force) as stage:
        (stage / "model.bin").write_text(payload)
        write_report(stage, {"payload": payload})


def test_success_renames_into_place(tmp_path: Path) -> None:
    out = tmp_path / "a" / "artifact"  # missing parents are created
    _make(out, "one")
    assert is_complete(out)
    report = json.loads((out / REPORT_FILE).read_text())
    assert report["version"] == REPORT_SCHEMA_VERSION and report["payload"] == "one"
    assert sorted(p.name for p in out.parent.iterdir()) == ["artifact"]


def test_exception_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "artifact"
    with pytest.raises(ValueError), staging(out) as stage:
        (stage / "model.bin").write_text("half")
        write_report(stage, {})  # even a report in the staging dir never reaches `out`
        raise ValueError("boom")
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_keep_partial_keeps_a_clearly_named_dir(tmp_path: Path) -> None:
    out = tmp_path / "artifact"
    with pytest.raises(KeyboardInterrupt), staging(out, keep_partial=True) as stage:
        (stage / "model.bin").write_text("half")
        raise KeyboardInterrupt
    (kept,) = tmp_path.iterdir()
    assert kept.name.startswith(f".artifact{PARTIAL_INFIX}")
    assert not (kept / REPORT_FILE).exists() and not out.exists()


def test_sigterm_cleans_up(tmp_path: Path) -> None:
    out = tmp_path / "artifact"
    with pytest.raises(SystemExit) as exc, staging(out) as stage:
        (stage / "model.bin").write_text("half")
        os.kill(os.getpid(), signal.SIGTERM)
    assert exc.value.code == 128 + signal.SIGTERM
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handler restored


def test_failed_rerun_keeps_previous_artifact(tmp_path: Path) -> None:
    out = tmp_path / "artifact"
    _make(out, "one")
    with pytest.raises(RuntimeError), staging(out, force=True) as stage:
        (stage / "model.bin").write_text("two")
        raise RuntimeError
    assert (out / "model.bin").read_text() == "one" and is_complete(out)
    _make(out, "two", force=True)  # a complete rerun replaces it
    assert (out / "model.bin").read_text() == "two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["artifact"]


def test_report_must_exist_and_be_last(tmp_path: Path) -> None:
    with pytest.raises(AdvisorError, match=REPORT_FILE), staging(tmp_path / "a") as stage:
        (stage / "model.bin").write_text("x")
    with pytest.raises(AdvisorError, match="last"), staging(tmp_path / "b") as stage:
        write_report(stage, {})
        late = stage / "late.txt"
        late.write_text("x")
        st = (stage / REPORT_FILE).stat()
        os.utime(late, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert list(tmp_path.iterdir()) == []


def test_is_complete(tmp_path: Path) -> None:
    assert not is_complete(tmp_path)
    (tmp_path / REPORT_FILE).write_text("{not json")
    assert not is_complete(tmp_path)
    (tmp_path / REPORT_FILE).write_text(json.dumps({"version": REPORT_SCHEMA_VERSION + 1}))
    assert not is_complete(tmp_path)
    (tmp_path / REPORT_FILE).write_text(json.dumps({"version": REPORT_SCHEMA_VERSION}))
    assert is_complete(tmp_path)


def test_out_checks(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(BadInput) as exc, staging(foreign):
        pass
    assert exc.value.fix and "new or empty" in exc.value.fix
    assert (foreign / "notes.txt").read_text() == "mine"

    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(BadInput), staging(a_file):
        pass

    empty = tmp_path / "empty"
    empty.mkdir()
    _make(empty, "ok")  # an empty directory is fine
    assert is_complete(empty)


def test_unwritable_parent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # chmod cannot lock out root (these tests may run as root): deny access where it is asked
    import advisor.artifact as artifact

    locked = tmp_path / "locked"
    locked.mkdir()
    monkeypatch.setattr(artifact.os, "access", lambda p, mode: Path(p) != locked)
    with pytest.raises(BadInput, match="not a writable directory"), staging(locked / "new" / "a"):
        pass
    assert list(locked.iterdir()) == []


def test_the_content_identity_sees_every_byte_and_reads_a_file_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 22, finding 5: a source with most of its weights changed (same size, same header)
    had the original's identity, so the original's cached reference and KL were reused."""
    import hashlib

    from advisor.artifact.cache import file_identity, file_sha256

    monkeypatch.setenv("QUANT_ADVISOR_CACHE", str(tmp_path / "cache"))
    model = tmp_path / "m.gguf"
    data = bytearray(np.random.default_rng(0).integers(0, 255, 9 << 20, dtype=np.uint8))
    model.write_bytes(bytes(data))
    before = file_identity(model)
    assert file_sha256(model) == hashlib.sha256(bytes(data)).hexdigest()
    assert len(list((tmp_path / "cache" / "digests").iterdir())) == 1  # memoised
    data[(9 << 20) // 2 + 12345] ^= 0xFF  # one byte in the middle, size unchanged
    model.write_bytes(bytes(data))
    assert file_identity(model) != before


def test_an_artifact_is_replaced_only_with_force_and_only_when_it_holds_nothing_else(
        tmp_path: Path) -> None:
    """Issues 21 and 22 (finding 2): a rerun silently replaced an artifact and its
    measurements; a directory of the user's files beside any report.json was deleted."""
    out = tmp_path / "artifact"
    _make(out, "one")
    with pytest.raises(BadInput, match="already holds an artifact") as exc:
        _make(out, "two")
    assert "--force" in (exc.value.fix or "") and (out / "model.bin").read_text() == "one"
    (out / "notes.txt").write_text("mine")  # the user's file inside the artifact
    with pytest.raises(BadInput, match="files it did not write.*notes.txt"):
        _make(out, "two", force=True)
    assert (out / "notes.txt").read_text() == "mine" and (out / "model.bin").read_text() == "one"
    (out / "notes.txt").unlink()
    _make(out, "two", force=True)
    assert (out / "model.bin").read_text() == "two"

    users = tmp_path / "users"  # any report.json of the right version is not ownership
    users.mkdir()
    (users / REPORT_FILE).write_text(json.dumps({"version": REPORT_SCHEMA_VERSION}))
    (users / "thesis.tex").write_text("years of work")
    with pytest.raises(BadInput, match="not an advisor artifact"):
        _make(users, "x", force=True)
    assert (users / "thesis.tex").read_text() == "years of work"


def test_out_may_not_be_or_contain_the_source(tmp_path: Path) -> None:
    from advisor.artifact import check_out_dir

    model_dir = tmp_path / "models" / "llama"
    model_dir.mkdir(parents=True)
    (model_dir / "model.safetensors").write_bytes(b"x")
    for out in (model_dir, model_dir.parent, tmp_path):
        with pytest.raises(BadInput, match="is or contains the source model"):
            check_out_dir(out, force=True, source=model_dir)
    check_out_dir(tmp_path / "elsewhere", source=model_dir)
    check_out_dir(model_dir / "out", source=model_dir / "model.safetensors")


def test_a_second_writer_is_refused_while_the_first_holds_the_artifact(tmp_path: Path) -> None:
    out = tmp_path / "artifact"
    with staging(out) as stage:
        with pytest.raises(BadInput, match="another advisor run is writing"), staging(out):
            pass
        (stage / "model.bin").write_text("first")
        write_report(stage, {})
    assert (out / "model.bin").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["artifact"]  # the lock is gone
