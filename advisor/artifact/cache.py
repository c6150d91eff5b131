"""Where the advisor keeps what it computes once (F16 references and conversions, importance
matrices, sensitivity tables, reference log-probs), and the content identity that keys them."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from advisor.errors import BadInput, user_path

_BLOCK = 1 << 22
_DIGEST_VERSION = 1  # part of the memo's key: bump when the digest's definition changes


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """`cache_dir`, else $QUANT_ADVISOR_CACHE, else ~/.cache/quant-advisor; created when missing.
    BadInput, before anything is computed for it, when it cannot be a directory (it is a file,
    lies under one, or cannot be created): a cache that fails at the first write would lose the
    work done so far, or end in a traceback."""
    env = os.environ.get("QUANT_ADVISOR_CACHE")
    if cache_dir is not None:
        root, what = user_path(cache_dir, "the cache directory"), "the cache directory"
    elif env:
        root, what = user_path(env, "QUANT_ADVISOR_CACHE"), "QUANT_ADVISOR_CACHE"
    else:
        return _usable(Path.home() / ".cache" / "quant-advisor", "the default cache")
    return _usable(root, what)


def _usable(root: Path, what: str) -> Path:
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        why = ("is a file, not a directory" if isinstance(e, FileExistsError)
               else "lies under a file, not a directory" if isinstance(e, NotADirectoryError)
               else f"cannot be created ({e.strerror or e})")
        raise BadInput(f"{what} {root} {why}",
                       "point QUANT_ADVISOR_CACHE at a writable directory, or unset it for "
                       "~/.cache/quant-advisor") from None
    return root


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's whole content, computed once per (path, size, mtime) and memoised in
    the cache (`digests/`): a 16 GB model is read once, not at every run. A file changed in
    place gets a new mtime, hence a new digest (issue 22 found that the sampled identity this
    replaces gave a source with 95% of its weights zeroed the original's cached reference)."""
    p = Path(path).resolve()
    st = p.stat()
    key = hashlib.sha256(f"{_DIGEST_VERSION}|{p}|{st.st_size}|{st.st_mtime_ns}".encode())
    try:
        memo = cache_root() / "digests" / f"{key.hexdigest()[:32]}.sha256"
    except BadInput:  # no usable cache: the digest is computed, not memoised
        memo = None
    try:
        text = memo.read_text().strip() if memo is not None else ""
        if len(text) == 64:
            return text
    except OSError:
        pass
    h = hashlib.sha256()
    with p.open("rb") as f:
        for block in iter(lambda: f.read(_BLOCK), b""):
            h.update(block)
    digest = h.hexdigest()
    if memo is None:
        return digest
    try:  # the memo is an optimisation: an unwritable cache only costs the next run a re-read
        memo.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo.with_name(f".{memo.name}.{os.getpid()}.tmp")
        tmp.write_text(digest + "\n")
        os.replace(tmp, memo)
    except OSError:
        pass
    return digest


def file_identity(path: str | Path) -> str:
    """Content identity of a model file or directory (every file's name, size and full sha256,
    memoised: file_sha256); keys every cache entry and study of that model."""
    p = Path(path)
    h = hashlib.sha256()
    files = sorted(x for x in p.rglob("*") if x.is_file()) if p.is_dir() else [p]
    for f in files:
        h.update(f"{f.relative_to(p) if p.is_dir() else f.name}:{f.stat().st_size}:"
                 f"{file_sha256(f)}\n".encode())
    return h.hexdigest()[:32]
