"""The F16 reference every candidate is measured against: an F16 GGUF of the source's weights
(dequantized for a quantized GGUF, converted for an HF directory), written once into the cache."""

from __future__ import annotations

import ctypes
import logging
import os
import tempfile
import time
from pathlib import Path

from advisor.artifact.cache import cache_root, file_identity
from advisor.errors import AdvisorError
from advisor.modelspec import ModelSpec, SourceFormat
from backends.gguf.backend import gguf_file

log = logging.getLogger(__name__)


def f16_reference(spec: ModelSpec, threads: int = 0) -> Path:
    """The GGUF whose logits are the reference of `spec`: the F16 GGUF of its weights (the
    dequantized weights for a quantized source), converted and cached once."""
    if spec.format is SourceFormat.GGUF:
        return make_f16_reference(spec.path, threads=threads)
    from backends.gguf.convert import cached_f16

    return cached_f16(spec)


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

    from advisor.artifact.preflight import check_disk

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
