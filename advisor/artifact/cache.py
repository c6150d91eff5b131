"""Where the advisor keeps what it computes once (F16 references and conversions, importance
matrices, sensitivity tables, reference log-probs), and the content identity that keys them."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

_BLOCK = 1 << 22
_DIGEST_VERSION = 1  # part of the memo's key: bump when the digest's definition changes


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """`cache_dir`, else $QUANT_ADVISOR_CACHE, else ~/.cache/quant-advisor."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("QUANT_ADVISOR_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "quant-advisor"


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's whole content, computed once per (path, size, mtime) and memoised in
    the cache (`digests/`): a 16 GB model is read once, not at every run. A file changed in
    place gets a new mtime, hence a new digest (issue 22 found that the sampled identity this
    replaces gave a source with 95% of its weights zeroed the original's cached reference)."""
    p = Path(path).resolve()
    st = p.stat()
    key = hashlib.sha256(f"{_DIGEST_VERSION}|{p}|{st.st_size}|{st.st_mtime_ns}".encode())
    memo = cache_root() / "digests" / f"{key.hexdigest()[:32]}.sha256"
    try:
        text = memo.read_text().strip()
        if len(text) == 64:
            return text
    except OSError:
        pass
    h = hashlib.sha256()
    with p.open("rb") as f:
        for block in iter(lambda: f.read(_BLOCK), b""):
            h.update(block)
    digest = h.hexdigest()
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
