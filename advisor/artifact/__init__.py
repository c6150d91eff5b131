"""Atomic artifact directories: an artifact at `--out` is either complete or absent.

Everything is written into a sibling staging directory `.{name}.partial-XXXX`; `report.json` is
the last file written into it, and only then is the directory renamed to `out`. A run that fails,
is interrupted (Ctrl-C, SIGTERM) or is killed leaves `out` as it was: never a `report.json` next
to half-written weights. A complete artifact already at `out` is replaced only once the new one
is complete (old renamed aside, new renamed in, old deleted).
"""

from __future__ import annotations

import fcntl
import hashlib
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
    except (OSError, ValueError, RecursionError):  # unreadable, not JSON, nested too deep
        return False
    return isinstance(data, dict) and data.get("version") == REPORT_SCHEMA_VERSION


def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def is_artifact(directory: Path) -> bool:
    """A directory the advisor owns: a complete report that records the digests of its weights
    and the files it wrote (`contents`), as write_report does."""
    if not is_complete(directory):
        return False
    try:
        rep = json.loads((Path(directory) / REPORT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return False
    return (isinstance(rep, dict) and isinstance(rep.get("digests"), dict)
            and isinstance(rep.get("contents"), dict))


def _foreign(directory: Path) -> list[str]:
    """Entries of an artifact directory its report does not list (the user's files)."""
    rep = json.loads((directory / REPORT_FILE).read_text(encoding="utf-8"))
    listed = set(rep.get("contents") or {}) | {REPORT_FILE}
    return sorted(p.name for p in directory.iterdir() if p.name not in listed)


def check_out_dir(out: Path, force: bool = False, source: str | Path | None = None) -> None:
    """Refuse an output path that cannot receive an artifact, before any work is done.

    Accepted: a path that does not exist yet (under a writable directory), an empty directory,
    or, with `force`, an artifact of the advisor holding only the files it wrote (it is
    replaced once the new one is complete). Refused with BadInput: a file, a dangling link, a
    non-empty directory that is not an artifact (never deleted, even with `force`), an artifact
    that holds other files, an artifact without `force`, `--out` equal to or containing the
    source model (`source`), an unwritable parent.
    """
    out = Path(out)
    if out.is_symlink() and not out.exists():
        raise BadInput(f"--out {out} is a dangling symbolic link", "pass a directory path")
    if out.exists() and not out.is_dir():
        raise BadInput(f"--out {out} is a file", "pass a directory path (new or empty)")
    if source is not None:
        src, dst = Path(source).resolve(), out.resolve()
        if src == dst or dst in src.parents:
            raise BadInput(f"--out {out} is or contains the source model {source}",
                           "pass an --out outside the model's directory")
    if out.is_dir() and any(out.iterdir()):
        if not is_artifact(out):
            raise BadInput(
                f"--out {out} exists, is not empty and is not an advisor artifact (no "
                f"{REPORT_FILE} with the digests of its weights)",
                "pass a new or empty directory; the advisor never deletes files it did not write")
        foreign = _foreign(out)
        if foreign:
            raise BadInput(f"--out {out} is an artifact that also holds files it did not write "
                           f"({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''})",
                           "move them out, or pass another --out")
        if not force:
            raise BadInput(f"--out {out} already holds an artifact (its measurements would be "
                           "lost)", "pass --force to replace it, or another --out")
    parent = _nearest_existing(out.absolute().parent)
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise BadInput(
            f"cannot write the artifact: {parent} is not a writable directory",
            "pass an --out under a directory you can write to",
        )


@contextmanager
def locked(out: Path) -> Iterator[None]:
    """An exclusive lock of artifact `out` (a `.{name}.lock` file beside it, since the directory
    itself is renamed on commit, removed on release): a second run writing or recording into
    the same artifact is refused at once instead of both saying "wrote"."""
    out = Path(out).absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    lock = out.parent / f".{out.name}.lock"
    while True:
        fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise BadInput(f"another advisor run is writing {out} (it holds {lock})",
                           "wait for it to finish, or pass another --out") from None
        try:  # the holder before us may have removed the file: lock the one at the path
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        yield
    finally:
        try:
            os.unlink(lock)
        except OSError:
            pass
        os.close(fd)  # closing releases the lock


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return "sha256:" + h.hexdigest()


def _ownership(directory: Path) -> dict[str, Any]:
    """`digests` of the weights and `contents` (every file, its bytes) of a staged artifact."""
    files = sorted(p for p in directory.iterdir() if p.is_file() and p.name != REPORT_FILE
                   and not p.name.startswith(f".{REPORT_FILE}"))
    return {"digests": {p.name: _sha256(p) for p in files
                        if p.suffix in (".gguf", ".safetensors")},
            "contents": {p.name: p.stat().st_size for p in files}}


def write_report(directory: Path, report: dict[str, Any]) -> Path:
    """Write `report.json` (atomically, via a temporary file) as the artifact's last file.

    A report of the tool (one with a `kind`) is validated against the published schema first
    (`advisor schema`): one that does not validate raises AdvisorError and is never written.
    """
    if "digests" not in report:  # first written: the weights' digests and the files it owns
        report.update(_ownership(Path(directory)))
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


def _commit(tmp: Path, out: Path, force: bool) -> None:
    """Rename the finished staging directory to `out`, replacing a complete artifact there."""
    check_out_dir(out, force)  # again: something may have appeared at `out` while we worked
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
def staging(out: Path, keep_partial: bool = False, force: bool = False) -> Iterator[Path]:
    """Yield an empty staging directory beside `out`; on success move it to `out`.

    The body writes every file, `write_report()` last. On an exception, Ctrl-C or SIGTERM the
    staging directory is removed (kept, under its `.partial-` name, when `keep_partial`) and
    `out` is untouched. `out` is locked (`locked`) from start to commit; an artifact already
    there is replaced only with `force` (check_out_dir).
    """
    out = Path(out).expanduser().absolute()
    check_out_dir(out, force)
    for stale in stale_partials(out):
        log.warning("leftover staging directory of an interrupted run: %s (safe to delete)", stale)
    out.parent.mkdir(parents=True, exist_ok=True)
    with locked(out):
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}{PARTIAL_INFIX}", dir=out.parent))
        try:
            with _signals_raise() as received:
                yield tmp
                if received:  # a signal whose exception was swallowed on the way
                    raise _Terminated(128 + received[0])
                _check_report_last(tmp)
                _commit(tmp, out, force)
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
