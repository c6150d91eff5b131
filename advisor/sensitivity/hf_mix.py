"""The sensitivity table of the HF int plan space: per fused group of linears (q/k/v, o, gate/up,
down of one layer) and scheme (W4A16, W8A16), the mean KL vs the reference when only that group
is stored so, the rest of the model at reference precision.

Every member of the group is replaced at once by its round-to-nearest integer round trip in
kernels.affine (the numerics the rtn backend writes, group size and per-channel fallback as
backends.hf.base.plan_job decides), on the same reference activations as the GGUF table
(advisor.sensitivity.runner.LayerCache: the GGUF's weights dequantized to float32, calibration
windows tokenized by llama.cpp). F16 costs 0 by definition (the reference is the F16 file).

GPTQ and AWQ write better integers than RTN for the same scheme, so for them this table is an
upper bound per group; the search uses it to rank groups (which to keep at 8 bits), and the
realized candidates are measured for real.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from collections.abc import Callable
from pathlib import Path

import torch

from advisor import formats
from advisor.sensitivity.table import (
    SensitivityConfig,
    SensitivityTable,
    cache_key,
    cache_path,
    load_cached,
    save_cached,
)
from advisor.space.hf_mix import FLOAT, HfPlanSpace

log = logging.getLogger(__name__)

INT_SCHEMES = {s: formats.WEIGHT_BITS[s] for s in formats.GROUPED_SCHEMES}  # W4A16: 4, W8A16: 8


def _round_trip(w: torch.Tensor, bits: int, group_size: int) -> torch.Tensor:
    from kernels.affine import IntSpec, dequantize, qparams, quantize

    g = group_size if group_size != -1 and w.shape[-1] % group_size == 0 else -1
    spec = IntSpec(bits, g, True)
    scale, zp = qparams(w, spec)
    return dequantize(quantize(w, scale, zp, spec), scale, zp).to(w.dtype)


def measure_hf_sensitivity(gguf_path: str | Path, space: HfPlanSpace, text: str, *,
                           config: SensitivityConfig = SensitivityConfig(),
                           on_progress: Callable[[int, int], None] | None = None,
                           model_id: str = "") -> SensitivityTable:
    """Measure the table (no cache)."""
    from advisor.sensitivity.loader import load_gguf_model
    from advisor.sensitivity.measure import _tokens
    from advisor.sensitivity.runner import LayerCache
    from backends.hf import torch_threads

    t0 = time.perf_counter()
    path = Path(gguf_path)
    windows = _tokens(path, text, config)
    loaded = load_gguf_model(path)
    groups = [t for t in space.tensors if t.free]
    costs: dict[str, dict[str, float]] = {t.name: {g: 0.0 for g in t.types}
                                          for t in space.tensors}
    measured: dict[str, tuple[str, ...]] = {}
    with torch_threads(0), torch.no_grad():
        cache = LayerCache(loaded, windows, config.scored_from)
        for done, t in enumerate(groups, 1):
            schemes = [g for g in t.types if g in INT_SCHEMES]
            members = space.members[t.name]
            sets = [{m: _round_trip(loaded.params[m].detach().float(), INT_SCHEMES[g],
                                    space.group_size) for m in members} for g in schemes]
            for g, kl in zip(schemes, cache.kl_sets(sets)):
                costs[t.name][g] = kl
            measured[t.name] = (*schemes, *(g for g in t.types if g == FLOAT))
            if on_progress is not None:
                on_progress(done, len(groups))
    seconds = time.perf_counter() - t0
    log.info("HF sensitivity of %d groups in %.1f s", len(groups), seconds)
    return SensitivityTable(
        space=space, costs=costs, measured=measured, config=config, model_id=model_id,
        text_sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(), imatrix_sha256=None,
        n_tokens=int(windows.size), n_scored=cache.n_scored, seconds=seconds,
        extra={"load_seconds": loaded.seconds, "kind": "hf", "round_trip": "rtn"})


def hf_sensitivity_table(gguf_path: str | Path, space: HfPlanSpace, text: str, *,
                         config: SensitivityConfig = SensitivityConfig(),
                         cache_dir: str | Path | None = None,
                         on_progress: Callable[[int, int], None] | None = None
                         ) -> SensitivityTable:
    """The table of `space` on the GGUF reference `gguf_path`, from the cache when measured
    before (key: the file's identity, the text, the space, the config)."""
    from advisor.artifact.cache import cache_root, file_identity

    model_id = file_identity(gguf_path)
    key = "hf-" + cache_key(model_id, hashlib.sha256(text.encode("utf-8")).hexdigest(), space,
                            None, config)
    where = cache_path(cache_root(cache_dir), key)
    cached = load_cached(where)
    if cached is not None and cached.space.tensors == space.tensors:
        if on_progress is not None:
            on_progress(1, 1)
        return dataclasses.replace(cached, space=space)
    table = measure_hf_sensitivity(gguf_path, space, text, config=config,
                                   on_progress=on_progress, model_id=model_id)
    save_cached(where, table)
    return table
