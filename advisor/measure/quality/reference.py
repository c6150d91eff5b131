"""The reference side: the log-probabilities of the F16 reference (backends.gguf.f16_reference),
cached once."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, closing, contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np

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
from advisor.measure.quality.streamed import streamed_logits, tokenized_windows
from advisor.textdata import WindowConfig, make_windows, text_sha256
from backends.base import Runner
from backends.gguf import gguf_file, streams

log = logging.getLogger(__name__)

RunnerFactory = Callable[[], Runner]
ProgressFn = Callable[[int, int], None]
Scored = Callable[[str], AbstractContextManager[tuple[np.ndarray, Iterator[np.ndarray]]]]
"""text -> (its windows, the logits [n_scored, vocab] of each window at its scored positions)."""


def _runner_scored(factory: RunnerFactory, cfg: WindowConfig) -> Scored:
    """The reference's logits from a Runner, one window per call (llama.cpp's own)."""

    @contextmanager
    def scored(text: str) -> Iterator[tuple[np.ndarray, Iterator[np.ndarray]]]:
        runner = factory()
        try:
            windows = make_windows(runner.tokenize(text), cfg, getattr(runner, "bos_token", None))

            def each() -> Iterator[np.ndarray]:
                for w in range(windows.shape[0]):
                    logits = runner.logits(windows[w].tolist())
                    if logits.ndim != 2 or logits.shape[0] != cfg.n_ctx:
                        raise AdvisorError(f"the reference returned logits of shape "
                                           f"{logits.shape}; expected ({cfg.n_ctx}, vocab)")
                    yield logits[cfg.first_scored:cfg.first_scored + cfg.n_scored]

            yield windows, each()
        finally:
            runner.close()

    return scored


def _streamed_scored(model: Path, cfg: WindowConfig, threads: int, device: str) -> Scored:
    """The reference's logits from the streamed sweep (advisor.measure.quality.streamed)."""

    @contextmanager
    def scored(text: str) -> Iterator[tuple[np.ndarray, Iterator[np.ndarray]]]:
        windows = tokenized_windows(model, text, cfg)
        with closing(streamed_logits(model, windows, cfg, threads=threads,
                                     device=device)) as each:
            yield windows, each

    return scored


def _open_reference(reference: str | Path | RunnerFactory, identity: str | None,
                    cfg: WindowConfig, threads: int, device: str) -> tuple[Scored, str]:
    if callable(reference):
        if not identity:
            raise ValueError("reference_logprobs(factory, ...) needs identity= (what the factory "
                             "loads, e.g. file_identity(model_dir)) to key the cache")
        return _runner_scored(reference, cfg), identity
    path = Path(reference)
    if path.is_dir() and not list(path.glob("*.gguf")):
        raise BadInput(f"reference {path} is not a GGUF model",
                       "pass a runner factory for other formats")
    model = gguf_file(path)
    if streams(model):
        return (_streamed_scored(model, cfg, threads, device),
                identity or f"{file_identity(model)}:torch-stream")

    def factory() -> Runner:
        from backends import get_backend

        return get_backend("gguf").load(model, n_ctx=cfg.n_ctx, threads=threads)

    # The runtime's settings are part of what the reference is (flash attention moves logits).
    return _runner_scored(factory, cfg), identity or f"{file_identity(model)}:gguf-runner"


def reference_logprobs(reference: str | Path | RunnerFactory, text: str,
                       cfg: WindowConfig | None = None, *, identity: str | None = None,
                       cache_dir: str | Path | None = None, threads: int = 0,
                       on_progress: ProgressFn | None = None,
                       device: str = "auto") -> RefCache:
    """The reference's log-probabilities on `text`, computed once and then read from the cache.

    `reference` is a GGUF file (or artifact directory) or a factory returning a loaded Runner
    whose context holds `cfg.n_ctx` tokens (the factory's runner is closed here; `identity` must
    then name what it loads). The reference's tokenizer cuts the text; candidates get the same
    tokens. A GGUF of 400M parameters or more (backends.gguf.layers.STREAM_FROM) is run
    streamed, on `device` (a `--device` value; advisor.measure.quality.streamed). The cache
    lives under `cache_root(cache_dir)/quality-ref/<key>`.
    """
    cfg = cfg or WindowConfig()
    scored, ident = _open_reference(reference, identity, cfg, threads, device)
    sha = text_sha256(text)
    key = cache_key(ident, sha, cfg)
    root = cache_root(cache_dir) / "quality-ref"
    cached = load_cache(root / key, key)
    if cached is not None:
        log.info("reference log-probs read from %s", cached.path)
        return cached

    t0 = time.perf_counter()
    with scored(text) as (windows, each):
        writer: CacheWriter | None = None
        try:
            vocab = 0
            for w, logits in enumerate(each):
                if writer is None:  # the vocabulary size is known from the first window
                    vocab = int(logits.shape[1])
                    writer = CacheWriter(root, key, windows, vocab, cfg)
                for r0 in range(0, cfg.n_scored, ROW_CHUNK):
                    r1 = min(r0 + ROW_CHUNK, cfg.n_scored)
                    writer.put(w, slice(r0, r1), log_softmax(logits[r0:r1]),
                               windows[w, cfg.first_scored + r0 + 1:cfg.first_scored + r1 + 1])
                if on_progress:
                    on_progress(w + 1, windows.shape[0])
            seconds = time.perf_counter() - t0
            meta = {"key": key, "storage": STORAGE_VERSION, "reference": ident,
                    "text_sha256": sha, "config": cfg.to_dict(), "vocab": vocab,
                    "seconds": seconds}
            path = writer.commit(meta) if writer is not None else root / key
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
    log.info("reference log-probs of %d windows computed in %.1f s", windows.shape[0], seconds)
    loaded = load_cache(path, key)
    if loaded is None:
        raise AdvisorError(f"reference cache {path} could not be read back after writing")
    return replace(loaded, computed=True, seconds=seconds)
