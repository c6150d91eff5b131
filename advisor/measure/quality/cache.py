"""On-disk cache of the reference's log-probabilities, one per (reference, text, windows).

Storage: for every scored position, the full-vocabulary log-probabilities as uint16 with a
per-position offset and scale (linear over [max(row min, -30 nats), row max]; below -30: zero
probability), like the base file of llama-perplexity --kl-divergence, plus the exact float64 NLL
of the next token and the exact top-1 token.

Error, measured on the embedded SmolLM2-135M (Q4_K_M vs its F16 reference, 3 windows, 765
positions) against float64 full-vocabulary KL: mean KL off by 2e-6 relative, p99 by 3e-5, at
most 4e-5 nats at one position; noise floor KL(stored || exact) 5e-9 nats mean, 1.2e-8 max.
Rejected: float16 log-probs (floor 4e-7), 8-bit codes (floor 7e-5..4e-4, too coarse for
Q8_0-class candidates), top-k + tail mass (biased low: -36% at k=16, -9% at k=256, -3.6% at
k=1024, since this small model spreads 2-20% of its mass over the long tail).
Cost: 2 bytes x vocab per scored position (SmolLM2 on the whole evaluation text:
21 windows x 255 positions x 49152 x 2 = 526 MB).
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from advisor.artifact.cache import cache_root, file_identity  # noqa: F401 - re-exported
from advisor.artifact.preflight import check_disk
from advisor.errors import BadInput
from advisor.textdata import WindowConfig

log = logging.getLogger(__name__)

STORAGE_VERSION = 1
LOGPROB_FLOOR = -30.0  # nats; mass below e^-30 per token is < 1e-7 even over 200k tokens
_Q_MAX = np.iinfo(np.uint16).max
# Scored positions handled at once: float64 rows of a 150k vocabulary stay near 100 MB.
ROW_CHUNK = 64


def cache_key(reference: str, text_sha: str, cfg: WindowConfig) -> str:
    body = json.dumps({"storage": STORAGE_VERSION, "reference": reference, "text": text_sha,
                       "windows": cfg.to_dict()}, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()[:24]


def encode_logprobs(lp: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of float64 log-probs -> (uint16 codes, float64 offsets, float64 scales).

    Codes 1..65535 are linear over [lo, row max], lo = max(row min, LOGPROB_FLOOR); code 0 is a
    log-prob below the floor, read back as probability 0 (dropping at most vocab x e^-30 mass;
    clamping instead would put that mass on tokens both models find impossible, and inflate KL).
    """
    lo = np.maximum(lp.min(axis=-1), LOGPROB_FLOOR)
    hi = lp.max(axis=-1)
    scale = np.maximum((hi - lo) / (_Q_MAX - 1), 1e-12)
    codes = 1 + np.rint((lp - lo[:, None]) / scale[:, None])
    codes = np.where(lp < lo[:, None], 0, np.clip(codes, 1, _Q_MAX))
    return codes.astype(np.uint16), lo, scale


def decode_logprobs(codes: np.ndarray, lo: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Inverse of encode_logprobs, renormalised so that each row's probabilities sum to 1."""
    lp = (codes.astype(np.float64) - 1) * scale[:, None] + lo[:, None]
    lp[codes == 0] = -np.inf
    m = lp.max(axis=-1, keepdims=True)
    lse = m + np.log(np.exp(lp - m).sum(axis=-1, keepdims=True))
    out: np.ndarray = lp - lse
    return out


@dataclass(frozen=True, eq=False)
class RefCache:
    """The reference side of every quality measurement on one text and window configuration.

    `tokens` [n_windows, n_ctx] are what every candidate is fed; `nll` and `top1`
    [n_windows, n_scored] are exact; `logprobs(w)` decodes window w's stored log-probs.
    `computed` tells whether this call ran the reference (False: read from disk).
    """

    path: Path
    key: str
    reference: str
    text_sha256: str
    config: WindowConfig
    vocab: int
    tokens: np.ndarray
    nll: np.ndarray
    top1: np.ndarray
    codes: np.ndarray
    offsets: np.ndarray
    scales: np.ndarray
    computed: bool
    seconds: float

    @property
    def n_windows(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def n_scored(self) -> int:
        return int(self.nll.shape[1])

    def targets(self, window: int) -> np.ndarray:
        """The actual next tokens of window `window`'s scored positions."""
        first = self.config.first_scored
        out: np.ndarray = self.tokens[window, first + 1: first + 1 + self.n_scored]
        return out

    def logprobs(self, window: int, rows: slice = slice(None)) -> np.ndarray:
        """Float64 reference log-probs [n_rows, vocab] of window `window`'s scored `rows`."""
        return decode_logprobs(np.asarray(self.codes[window, rows]),
                               np.asarray(self.offsets[window, rows]),
                               np.asarray(self.scales[window, rows]))


_ARRAYS = ("tokens", "nll", "top1", "codes", "offsets", "scales")


class CacheWriter:
    """Writes a RefCache window by window into a temporary directory, then moves it in place."""

    def __init__(self, root: Path, key: str, tokens: np.ndarray, vocab: int,
                 cfg: WindowConfig) -> None:
        self.final = root / key
        root.mkdir(parents=True, exist_ok=True)
        n_w, n_s = tokens.shape[0], cfg.n_scored
        codes_bytes = n_w * n_s * vocab * 2
        # The codes are written through a memory map: a disk that fills up under it kills the
        # process with SIGBUS and no message (issue 22). Check the free space first, then
        # reserve the blocks, so that running out is one BadInput line before any write.
        what = f"the reference log-probs of {n_w} windows ({vocab:,}-token vocabulary)"
        check_disk(root, codes_bytes + n_w * n_s * 28 + tokens.nbytes, what)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=root))
        try:
            np.save(self.tmp / "tokens.npy", tokens)
            self.codes = np.lib.format.open_memmap(self.tmp / "codes.npy", mode="w+",
                                                   dtype=np.uint16, shape=(n_w, n_s, vocab))
            _reserve(self.tmp / "codes.npy", what)
        except BaseException:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise
        self.nll = np.zeros((n_w, n_s), np.float64)
        self.top1 = np.zeros((n_w, n_s), np.int32)
        self.offsets = np.zeros((n_w, n_s), np.float64)
        self.scales = np.zeros((n_w, n_s), np.float64)

    def put(self, window: int, rows: slice, logprobs: np.ndarray, targets: np.ndarray) -> None:
        """Store scored `rows` of `window`: their float64 log-probs and actual next tokens."""
        self.nll[window, rows] = -logprobs[np.arange(logprobs.shape[0]), targets]
        self.top1[window, rows] = np.argmax(logprobs, axis=-1)
        codes, lo, scale = encode_logprobs(logprobs)
        self.codes[window, rows], self.offsets[window, rows], self.scales[window, rows] = (
            codes, lo, scale)

    def commit(self, meta: dict[str, Any]) -> Path:
        self.codes.flush()
        del self.codes
        for name in ("nll", "top1", "offsets", "scales"):
            np.save(self.tmp / f"{name}.npy", getattr(self, name))
        (self.tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        try:
            os.replace(self.tmp, self.final)  # atomic: readers see a complete cache or none
        except OSError as e:  # another process committed the same key first: keep theirs
            log.info("reference cache %s already written (%s)", self.final, e)
            shutil.rmtree(self.tmp, ignore_errors=True)
        return self.final

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def _reserve(path: Path, what: str) -> None:
    """Allocate every block of `path` now (posix_fallocate), so that writes through its memory
    map cannot meet a full disk; BadInput when the blocks are not there. Filesystems that cannot
    reserve blocks (and hosts without posix_fallocate) are left to the check_disk before."""
    if not hasattr(os, "posix_fallocate"):
        return
    with open(path, "r+b") as f:
        size = os.fstat(f.fileno()).st_size
        try:
            os.posix_fallocate(f.fileno(), 0, size)
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise BadInput(f"not enough free disk for {what}: {size:,} bytes could not be "
                               f"reserved under {path.parent.parent} ({e.strerror})",
                               "free some space there or point QUANT_ADVISOR_CACHE at a larger "
                               "disk") from None
            # EOPNOTSUPP, EINVAL: this filesystem does not reserve; check_disk stands


def load_cache(path: Path, key: str) -> RefCache | None:
    """The cache at `path` if complete and of this key, else None."""
    meta_file = path / "meta.json"
    if not meta_file.is_file():
        return None
    try:
        meta = json.loads(meta_file.read_text())
        if meta.get("key") != key or meta.get("storage") != STORAGE_VERSION:
            return None
        arrays = {n: np.load(path / f"{n}.npy", mmap_mode="r", allow_pickle=False)
                  for n in _ARRAYS}
    except (OSError, ValueError) as e:
        log.warning("unreadable reference cache %s (%s); recomputing", path, e)
        return None
    return RefCache(path=path, key=key, reference=meta["reference"],
                    text_sha256=meta["text_sha256"], config=WindowConfig.from_dict(meta["config"]),
                    vocab=int(meta["vocab"]), computed=False, seconds=0.0, **arrays)
