"""`--imatrix FILE`: an importance matrix the user brings, in either of llama.cpp's formats.

- GGUF (`llama-imatrix` since mid-2025, `imatrix.gguf`): per weight matrix a tensor
  `<name>.in_sum2` (F32, ne = [n_cols, n_mat]) of summed squared activations and `<name>.counts`
  (F32, one count per matrix); the importance is in_sum2 / count, as llama-quantize's loader
  computes it (a matrix with count 0 gets 1.0 everywhere).
- Legacy `.dat`: int32 n_entries, then per entry int32 name length, the name, int32 ncall,
  int32 n_values and n_values float32 (mean x ncall); llama-quantize divides by ncall. A chunk
  count and the dataset's file name may follow; they are not needed.

The file is untrusted: every count and length is bounded by the file's own size before anything
is allocated, and a file that is neither format, is truncated, or holds non-finite values is
refused with one line (BadInput, exit 2).
"""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import numpy as np

from advisor.errors import BadInput
from backends.gguf.imatrix import Imatrix

_MAX_NAME = 1024
_FIX = "pass an importance matrix written by llama.cpp's llama-imatrix (GGUF or legacy .dat)"


def _refuse(path: Path, why: str) -> BadInput:
    return BadInput(f"--imatrix {path}: {why}", _FIX)


def _from_gguf(path: Path) -> dict[str, np.ndarray]:
    from gguf import GGUFReader

    try:
        reader = GGUFReader(str(path))
    except (ValueError, OSError, struct.error, IndexError, KeyError) as e:
        raise _refuse(path, f"not a readable GGUF file ({e})") from None
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, np.ndarray] = {}
    for t in reader.tensors:
        if t.name.endswith(".in_sum2"):
            sums[t.name[: -len(".in_sum2")]] = np.asarray(t.data, dtype=np.float64)
        elif t.name.endswith(".counts"):
            counts[t.name[: -len(".counts")]] = np.asarray(t.data, dtype=np.float64).reshape(-1)
    if not sums:
        raise _refuse(path, "a GGUF file without imatrix tensors (<name>.in_sum2)")
    values = {}
    for name, s in sums.items():
        c = counts.get(name)
        n_mat = s.shape[0] if s.ndim == 2 else 1
        if c is None or c.size != n_mat:
            raise _refuse(path, f"{name} has no matching .counts tensor ({n_mat} matrices)")
        s2 = s.reshape(n_mat, -1)
        safe = np.where(c > 0, c, 1.0)[:, None]
        values[name] = np.where(c[:, None] > 0, s2 / safe, 1.0).reshape(-1).astype(np.float32)
    return values


def _from_legacy(path: Path, raw: bytes) -> dict[str, np.ndarray]:
    size, pos = len(raw), 0

    def ints(n: int) -> tuple[int, ...]:
        nonlocal pos
        if pos + 4 * n > size:
            raise _refuse(path, f"truncated at byte {pos}")
        out = struct.unpack_from(f"<{n}i", raw, pos)
        pos += 4 * n
        return out

    (n_entries,) = ints(1)
    if not 0 < n_entries <= size // 12:  # each entry takes at least 12 bytes
        raise _refuse(path, f"{n_entries} entries do not fit its {size} bytes")
    values = {}
    for _ in range(n_entries):
        (length,) = ints(1)
        if not 0 < length <= _MAX_NAME or pos + length > size:
            raise _refuse(path, f"an entry name of {length} bytes at byte {pos}")
        name = raw[pos: pos + length].decode("utf-8", errors="replace")
        pos += length
        ncall, n_values = ints(2)
        if not 0 <= n_values <= (size - pos) // 4:
            raise _refuse(path, f"{name} claims {n_values} values past the end of the file")
        v = np.frombuffer(raw, dtype="<f4", count=n_values, offset=pos).astype(np.float64)
        pos += 4 * n_values
        values[name] = (v / ncall if ncall > 0 else v).astype(np.float32)
    return values


def load_imatrix_file(path: str | Path) -> Imatrix:
    """The importance matrix in `path` (GGUF or legacy .dat), validated."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise BadInput(f"--imatrix {p} is not a file", _FIX + "; --imatrix alone computes one")
    raw = p.read_bytes() if p.stat().st_size < 2**31 else b""
    if not raw:
        raise _refuse(p, "empty or larger than 2 GiB")
    values = _from_gguf(p) if raw[:4] == b"GGUF" else _from_legacy(p, raw)
    for name, v in values.items():
        if not np.isfinite(v).all() or (v < 0).any():
            raise _refuse(p, f"{name} holds negative or non-finite values")
    return Imatrix(values, n_tokens=0, n_chunks=0,
                   text_sha256="file:" + hashlib.sha256(raw).hexdigest())


def check_covers(imatrix: Imatrix, sizes: dict[str, int], required: list[str],
                 path: str | Path) -> None:
    """Every tensor that needs an importance matrix has one, and every entry naming a tensor of
    the model has that tensor's row width (x experts) values, which llama.cpp reads without a
    check: a matrix of another model is refused."""
    missing = [n for n in required if n not in imatrix.values]
    if missing:
        raise BadInput(f"--imatrix {path} has no entry for {missing[0]} (and {len(missing) - 1} "
                       "more tensors this plan quantizes with one): it was computed for another "
                       "model", "compute it for this model with llama-imatrix, or drop --imatrix "
                       "FILE to let the advisor compute one")
    for name, size in sizes.items():
        v = imatrix.values.get(name)
        if v is not None and v.size != size:
            raise BadInput(f"--imatrix {path}: {name} has {v.size} values where the model has "
                           f"{size} columns: it was computed for another model",
                           "compute it for this model with llama-imatrix")


def imatrix_sizes(shapes: dict[str, tuple[int, ...]]) -> dict[str, int]:
    """Values an importance matrix holds per tensor: the row width (PyTorch's last dim), times
    the experts of a 3-D expert tensor."""
    return {name: shape[-1] * (shape[0] if len(shape) == 3 else 1)
            for name, shape in shapes.items() if shape}
