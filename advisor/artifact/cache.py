"""Where the advisor keeps what it computes once (F16 references and conversions, importance
matrices, sensitivity tables, reference log-probs), and the content identity that keys them."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

_SAMPLES = 16  # content samples of a file's identity
_SAMPLE_BYTES = 1 << 16
_EDGE_BYTES = 1 << 20


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """`cache_dir`, else $QUANT_ADVISOR_CACHE, else ~/.cache/quant-advisor."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("QUANT_ADVISOR_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "quant-advisor"


def _file_digest(h: Any, path: Path) -> None:
    size = path.stat().st_size
    h.update(f"{path.name}:{size}:".encode())
    # Head (the GGUF header: metadata, tensor names, types, offsets), tail, and evenly spaced
    # samples: a full hash of a 16 GB file would cost more than the check is worth.
    spans = [(0, _EDGE_BYTES), (max(size - _EDGE_BYTES, 0), _EDGE_BYTES)]
    spans += [(size * i // _SAMPLES, _SAMPLE_BYTES) for i in range(1, _SAMPLES)]
    with path.open("rb") as f:
        for off, n in spans:
            f.seek(off)
            h.update(f.read(n))


def file_identity(path: str | Path) -> str:
    """Cheap content identity of a model file or directory: names, sizes and sampled bytes."""
    p = Path(path)
    h = hashlib.sha256()
    files = sorted(x for x in p.rglob("*") if x.is_file()) if p.is_dir() else [p]
    for f in files:
        _file_digest(h, f)
    return h.hexdigest()[:32]
