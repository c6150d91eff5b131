"""Atomic artifact directories: an artifact at `--out` is either complete or absent.

Everything is written into a sibling staging directory `.{name}.partial-XXXX`; `report.json` is
the last file written into it, and only then is the directory renamed to `out`. A run that fails,
is interrupted (Ctrl-C, SIGTERM) or is killed leaves `out` as it was: never a `report.json` next
to half-written weights. A complete artifact already at `out` is replaced only once the new one
is complete (old renamed aside, new renamed in, old deleted).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from advisor.errors import AdvisorError, BadInput
from advisor.report.schema import REPORT_SCHEMA_VERSION

log = logging.getLogger(__name__)

REPORT_FILE = "report.json"
PARTIAL_INFIX = ".partial-"
_OLD_INFIX = ".old-"


def is_complete(directory: Path) -> bool:
    """An artifact is complete when its report.json exists and parses with our schema version."""
    report = Path(directory) / REPORT_FILE
    if not report.is_file():
        return False
    try:
        data = json.loads(report.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("version") == REPORT_SCHEMA_VERSION


def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_out_dir(out: Path) -> None:
    """Refuse an output path that cannot receive an artifact, before any work is done.

    Accepted: a path that does not exist yet (under a writable directory), an empty directory,
    or a complete artifact (it will be replaced). Refused with BadInput: a file, a non-empty
    directory that is not an artifact, an unwritable parent.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BadInput(f"--out {out} is a file", "pass a directory path (new or empty)")
    if out.is_dir() and any(out.iterdir()) and not is_complete(out):
        raise BadInput(
            f"--out {out} exists, is not empty and is not an advisor artifact (no valid "
            f"{REPORT_FILE})",
            "pass a new or empty directory, or remove this one first",
        )
    parent = _nearest_existing(out.absolute().parent)
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise BadInput(
            f"cannot write the artifact: {parent} is not a writable directory",
            "pass an --out under a directory you can write to",
        )


def write_report(directory: Path, report: dict[str, Any]) -> Path:
    """Write `report.json` (atomically, via a temporary file) as the artifact's last file.

    A report of the tool (one with a `kind`) is validated against the published schema first
    (`advisor schema`): one that does not validate raises AdvisorError and is never written.
    """
    data = {"version": REPORT_SCHEMA_VERSION, **report}
    if data["version"] != REPORT_SCHEMA_VERSION:
        raise ValueError(f"report version {data['version']!r}; expected {REPORT_SCHEMA_VERSION}")
    if "kind" in data:
        from advisor.report.validate import validate_report

        validate_report(json.loads(json.dumps(data, default=str)))
    target = Path(directory) / REPORT_FILE
    tmp = target.with_name(f".{REPORT_FILE}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=False, default=str)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, target)
    return target


def _check_report_last(directory: Path) -> None:
    report = directory / REPORT_FILE
    if not is_complete(directory):
        raise AdvisorError(
            f"the artifact in {directory} has no valid {REPORT_FILE}",
            "write it with advisor.artifact.write_report() as the last step inside staging()",
        )
    t_report = report.stat().st_mtime_ns
    later = [p.name for p in directory.rglob("*")
             if p.is_file() and p != report and p.stat().st_mtime_ns > t_report]
    if later:
        raise AdvisorError(
            f"files written after {REPORT_FILE}: {', '.join(sorted(later))}",
            f"{REPORT_FILE} must be the last file written",
        )


def _fsync_dir(path: Path) -> None:
    """Make the renames durable; best effort (some filesystems refuse to fsync a directory)."""
    if os.name != "posix":
        return
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as e:
        log.debug("fsync of %s failed: %s", path, e)


def _commit(tmp: Path, out: Path) -> None:
    """Rename the finished staging directory to `out`, replacing a complete artifact there."""
    check_out_dir(out)  # again: something may have appeared at `out` while we worked
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}{_OLD_INFIX}", dir=out.parent))
        os.rename(out, old / "artifact")
        try:
            os.rename(tmp, out)
        except OSError:
            os.rename(old / "artifact", out)  # put the previous artifact back
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, out)
    _fsync_dir(out.parent)


class _Terminated(SystemExit):
    """SIGTERM/SIGINT during staging, turned into an exception so the cleanup runs."""


@contextmanager
def _signals_raise() -> Iterator[list[int]]:
    """Inside the block, SIGTERM and SIGINT raise (exit code 128 + signal) instead of killing
    the process outright, and are remembered: a handler that runs inside a ctypes callback
    (llama.cpp's log callback during quantization) has its exception swallowed by ctypes, so
    `staging` checks the yielded list before committing.

    Only the main thread may set handlers; elsewhere the defaults stay (the staging directory is
    then left behind, `out` is still untouched).
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        raise _Terminated(128 + signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield received
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def stale_partials(out: Path) -> list[Path]:
    """Staging directories of `out` left by runs that were killed (SIGKILL, power loss)."""
    out = Path(out).absolute()
    if not out.parent.is_dir():
        return []
    return sorted(out.parent.glob(f".{out.name}{PARTIAL_INFIX}*"))


@contextmanager
def staging(out: Path, keep_partial: bool = False) -> Iterator[Path]:
    """Yield an empty staging directory beside `out`; on success move it to `out`.

    The body writes every file, `write_report()` last. On an exception, Ctrl-C or SIGTERM the
    staging directory is removed (kept, under its `.partial-` name, when `keep_partial`) and
    `out` is untouched.
    """
    out = Path(out).expanduser().absolute()
    check_out_dir(out)
    for stale in stale_partials(out):
        log.warning("leftover staging directory of an interrupted run: %s (safe to delete)", stale)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}{PARTIAL_INFIX}", dir=out.parent))
    try:
        with _signals_raise() as received:
            yield tmp
            if received:  # a signal whose exception was swallowed on the way
                raise _Terminated(128 + received[0])
            _check_report_last(tmp)
            _commit(tmp, out)
    except BaseException:
        if keep_partial and tmp.exists():
            log.warning("incomplete artifact kept in %s", tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_report(directory: Path) -> dict[str, Any]:
    """The report.json of a complete artifact, validated; BadInput for anything else."""
    from advisor.report.validate import report_errors

    directory = Path(directory)
    if not directory.is_dir():
        raise BadInput(f"{directory} is not a directory", "pass an artifact directory written "
                       "by `advisor quantize` or `advisor recommend`")
    if not is_complete(directory):
        raise BadInput(f"{directory} is not a complete advisor artifact (no valid "
                       f"{REPORT_FILE})", "pass a directory written by `advisor quantize` or "
                       "`advisor recommend`")
    rep: dict[str, Any] = json.loads((directory / REPORT_FILE).read_text(encoding="utf-8"))
    errors = report_errors(rep)
    if errors:
        raise BadInput(f"{directory / REPORT_FILE} does not match the report schema: "
                       f"{errors[0]}", "re-create it with the advisor; `advisor schema` "
                       "prints the schema")
    return rep
