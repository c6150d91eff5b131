"""The reference side: an F16 GGUF of a GGUF source, and its log-probabilities, cached once."""

from __future__ import annotations

import ctypes
import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from advisor.errors import AdvisorError, BadInput
from advisor.quality.cache import (
    ROW_CHUNK,
    STORAGE_VERSION,
    CacheWriter,
    RefCache,
    cache_key,
    cache_root,
    file_identity,
    load_cache,
)
from advisor.quality.metrics import log_softmax
from advisor.quality.windows import WindowConfig, make_windows, text_sha256
from backends.base import Runner
from backends.gguf import gguf_file

log = logging.getLogger(__name__)

RunnerFactory = Callable[[], Runner]
ProgressFn = Callable[[int, int], None]


def make_f16_reference(src_gguf: str | Path, cache_dir: str | Path | None = None,
                       threads: int = 0) -> Path:
    """An F16 GGUF of `src_gguf`'s weights (dequantized), written once into the cache.

    A float source (F32/F16/BF16) is its own reference and is returned as is. A quantized
    source's reference is its dequantized weights: re-quantizing to the source's own type then
    looks nearly free, which reports must say (ModelSpec.source_quantization).
    """
    from advisor.inspect import inspect_model

    src = gguf_file(src_gguf)
    if inspect_model(src).source_quantization is None:
        return src
    out_dir = cache_root(cache_dir) / "references"
    dst = out_dir / f"{src.stem}-{file_identity(src)[:16]}.F16.gguf"
    if dst.is_file():
        return dst
    import llama_cpp

    from advisor.preflight import check_disk

    out_dir.mkdir(parents=True, exist_ok=True)
    # pre-flight: the F16 copy is 2 bytes a parameter (the heavy write of this stage)
    check_disk(out_dir, 2 * inspect_model(src).n_params, f"the F16 reference of {src.name}")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dst.name}-", dir=out_dir)
    os.close(fd)
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_F16
    params.allow_requantize = True  # the source is quantized: dequantize it to F16
    params.nthread = threads or os.cpu_count() or 1
    # llama.cpp logs every tensor through llama-cpp-python's logger; keep it to errors.
    lc_logger = logging.getLogger("llama-cpp-python")
    level = lc_logger.level
    lc_logger.setLevel(logging.ERROR)
    t0 = time.perf_counter()
    try:
        rc = llama_cpp.llama_model_quantize(str(src).encode(), tmp_name.encode(),
                                            ctypes.byref(params))
    finally:
        lc_logger.setLevel(level)
    if rc != 0:
        Path(tmp_name).unlink(missing_ok=True)
        raise AdvisorError(f"llama_model_quantize could not write an F16 copy of {src} (rc={rc})")
    os.replace(tmp_name, dst)
    log.info("F16 reference %s written in %.1f s", dst, time.perf_counter() - t0)
    return dst


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
