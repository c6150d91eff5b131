"""The reference side: the log-probabilities of the F16 reference (backends.gguf.f16_reference),
cached once."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from advisor.artifact.cache import cache_root
from advisor.errors import AdvisorError, BadInput
from advisor.measure.quality.cache import (
    ROW_CHUNK,
    STORAGE_VERSION,
    CacheWriter,
    RefCache,
    cache_key,
    file_identity,
    load_cache,
)
from advisor.measure.quality.metrics import log_softmax
from advisor.textdata import WindowConfig, make_windows, text_sha256
from backends.base import Runner
from backends.gguf import gguf_file

log = logging.getLogger(__name__)

RunnerFactory = Callable[[], Runner]
ProgressFn = Callable[[int, int], None]


def _open_reference(reference: str | Path | RunnerFactory, identity: str | None,
                    cfg: WindowConfig, threads: int) -> tuple[RunnerFactory, str]:
    if callable(reference):
        if not identity:
            raise ValueError("reference_logprobs(factory, ...) needs identity= (what the factory "
                             "loads, e.g. file_identity(model_dir)) to key the cache")
        return reference, identity
    path = Path(reference)
    if path.is_dir() and not list(path.glob("*.gguf")):
        raise BadInput(f"reference {path} is not a GGUF model",
                       "pass a runner factory for other formats")
    model = gguf_file(path)

    def factory() -> Runner:
        from backends import get_backend

        return get_backend("gguf").load(model, n_ctx=cfg.n_ctx, threads=threads)

    # The runtime's settings are part of what the reference is (flash attention moves logits).
    return factory, identity or f"{file_identity(model)}:gguf-runner"


def reference_logprobs(reference: str | Path | RunnerFactory, text: str,
                       cfg: WindowConfig | None = None, *, identity: str | None = None,
                       cache_dir: str | Path | None = None, threads: int = 0,
                       on_progress: ProgressFn | None = None) -> RefCache:
    """The reference's log-probabilities on `text`, computed once and then read from the cache.

    `reference` is a GGUF file (or artifact directory) or a factory returning a loaded Runner
    whose context holds `cfg.n_ctx` tokens (the factory's runner is closed here; `identity` must
    then name what it loads). The reference's tokenizer cuts the text; candidates get the same
    tokens. The cache lives under `cache_root(cache_dir)/quality-ref/<key>`.
    """
    cfg = cfg or WindowConfig()
    factory, ident = _open_reference(reference, identity, cfg, threads)
    sha = text_sha256(text)
    key = cache_key(ident, sha, cfg)
    root = cache_root(cache_dir) / "quality-ref"
    cached = load_cache(root / key, key)
    if cached is not None:
        log.info("reference log-probs read from %s", cached.path)
        return cached

    t0 = time.perf_counter()
    runner = factory()
    try:
        windows = make_windows(runner.tokenize(text), cfg, getattr(runner, "bos_token", None))
        first = cfg.first_scored
        writer: CacheWriter | None = None
        try:
            for w in range(windows.shape[0]):
                logits = runner.logits(windows[w].tolist())
                if logits.ndim != 2 or logits.shape[0] != cfg.n_ctx:
                    raise AdvisorError(f"the reference returned logits of shape {logits.shape}; "
                                       f"expected ({cfg.n_ctx}, vocab)")
                if writer is None:  # the vocabulary size is known from the first window
                    writer = CacheWriter(root, key, windows, int(logits.shape[1]), cfg)
                for r0 in range(0, cfg.n_scored, ROW_CHUNK):
                    r1 = min(r0 + ROW_CHUNK, cfg.n_scored)
                    writer.put(w, slice(r0, r1), log_softmax(logits[first + r0:first + r1]),
                               windows[w, first + r0 + 1:first + r1 + 1])
                if on_progress:
                    on_progress(w + 1, windows.shape[0])
            seconds = time.perf_counter() - t0
            meta = {"key": key, "storage": STORAGE_VERSION, "reference": ident,
                    "text_sha256": sha, "config": cfg.to_dict(), "vocab": int(logits.shape[1]),
                    "seconds": seconds}
            path = writer.commit(meta) if writer is not None else root / key
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
    finally:
        runner.close()
    log.info("reference log-probs of %d windows computed in %.1f s", windows.shape[0], seconds)
    loaded = load_cache(path, key)
    if loaded is None:
        raise AdvisorError(f"reference cache {path} could not be read back after writing")
    return replace(loaded, computed=True, seconds=seconds)
