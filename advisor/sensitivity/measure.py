"""Measure the sensitivity table: per tensor and candidate type, the KL vs the reference.

The reference is the GGUF's weights dequantized to float32 (a quantized source's own grid, as in
advisor.measure.quality). Each candidate is libggml's own quantize/dequantize round trip of the
tensor (kernels.ggml_quant, with the tensor's importance weights when an imatrix is given), so its
values are those llama.cpp would write. transformers holds q/k rows un-permuted from the GGUF
order, but a block never crosses a row and the imatrix is per column, so quantizing the HF-ordered
rows gives the same rows (tests/sensitivity checks it bit for bit).

Cost: one pass through the remaining layers and the 49k-word head per measured candidate
dominates (~0.3 s of one core on the embedded model with 2 x 32 tokens), so by default one
candidate per tensor (the cheapest) is measured and the others are scaled by their mean squared
output error ||(W'-W)x||^2 on the same tokens. On the embedded SmolLM2-135M (default config, 211
tensors, 961 candidates) against measuring all 961: scaled/measured ratio geometric mean 1.01,
80% within 1.5x, p10-p90 0.69-1.50; the DP plan of the scaled table at Q3_K_M's size scores 0.0934
nats on the all-measured table against 0.0921 for that table's own optimum (Q4_K_M: 0.0233 vs
0.0221), for 4.5x less time (88 s vs 415 s wall on a shared 2-core host).

Anchored (`SensitivityConfig.anchors`, recommend's default 8): only the anchor layers are
replayed, so the cost is a fixed number of replays plus one output error per candidate, linear in
the parameters. On the embedded model with its imatrix, against the every-layer table: Spearman
0.98 over the 961 candidate costs, anchored/every-layer ratio geometric mean 1.09 (p10-p90
0.72-1.57); the anchored table's DP plans score 1.04-1.08x the every-layer optimum on the
every-layer table; 35 s instead of 53 s for the table (idle 2-core host). Held-out measured KL of
`recommend --max-size <Q3_K_M bytes> --eval-windows 4` picks: 0.0344 nats (8 anchors), 0.0341
(6) against 0.0346 (every layer); on the rotated float-native copy
(advisor.benchmarks.float_native) at its Q3_K_M size, 0.0607 against 0.0593 (table 50.5 s
against 58.5 s). Per-role gains on the linear's own output error beat a per-layer gain on the
whole layer's output error (1.04-1.08x against 1.07-1.17x).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np
import torch

from advisor import formats
from advisor.errors import BadInput
from advisor.modelspec import SourceFormat
from advisor.sensitivity.runner import LayerCache
from advisor.sensitivity.table import (
    SensitivityConfig,
    SensitivityTable,
    cache_key,
    cache_path,
    load_cached,
    save_cached,
)
from advisor.space.choices import PlanSpace, TensorChoice, gguf_plan_space
from backends.hf import torch_threads

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]


def imatrix_digest(imatrix: Mapping[str, np.ndarray] | None) -> str | None:
    from backends.gguf import values_digest

    return None if imatrix is None else values_digest(imatrix)


def _tokens(path: Path, text: str, cfg: SensitivityConfig) -> np.ndarray:
    """Calibration windows tokenized by llama.cpp itself (the runtime that serves the model)."""
    from advisor.textdata import WindowConfig, make_windows
    from backends.gguf import LlamaSession

    with LlamaSession(path, n_ctx=cfg.n_ctx, n_batch=cfg.n_ctx, threads=1, vocab_only=True) as s:
        # a window never needs more than n_ctx * n_windows tokens: tokenize no more text
        need_chars = 16 * cfg.n_ctx * cfg.n_windows
        tokens = s.tokenize(text[:need_chars])
        if len(tokens) < cfg.n_ctx * cfg.n_windows:
            tokens = s.tokenize(text)
        bos = s.bos if s.add_bos else None
    return make_windows(tokens, WindowConfig(n_ctx=cfg.n_ctx, max_windows=cfg.n_windows), bos)


def _encoded(weight: np.ndarray, gtype: str,
             importance: np.ndarray | None) -> tuple[np.ndarray, int | None]:
    """Candidate `gtype` of `weight`: its GGML bytes and type id, or for a float type its float32
    values and None (advisor.sensitivity.stream.decoded reads either back)."""
    from kernels.ggml_quant import quantize

    t = formats.ggml_type(gtype)
    if t.is_quantized:
        if t.requires_imatrix and importance is None:
            raise BadInput(f"{gtype} needs importance weights, and the imatrix has none for "
                           "this tensor", "drop the type from the menu")
        imp = importance if t.uses_imatrix else None
        return quantize(weight.reshape(-1, weight.shape[-1]), t.type_id, imp), t.type_id
    if gtype == "F16":
        return weight.astype(np.float16).astype(np.float32), None
    if gtype == "BF16":
        return torch.from_numpy(weight).to(torch.bfloat16).to(torch.float32).numpy(), None
    return weight.copy(), None  # F32: the reference itself


def _quantized(weight: np.ndarray, types: tuple[str, ...],
               importance: np.ndarray | None) -> list[torch.Tensor]:
    from advisor.sensitivity.stream import decoded

    return [torch.from_numpy(decoded(*_encoded(weight, g, importance), weight.shape))
            for g in types]


Measured = tuple[dict[str, float], tuple[str, ...], "list[float] | None"]


def _measure_group(cache: LayerCache, group: list[TensorChoice],
                   values: list[list[torch.Tensor]], exhaustive: bool) -> list[Measured]:
    """Costs of every candidate of the tensors of one layer, the types that were measured, and
    the candidates' output errors (None where the tensor has none: embedding, head).

    One batched KL call for the group; a tensor whose cheapest candidate leaves its output
    unchanged (zero error: nothing to scale from) has every candidate measured."""
    plans = []
    items: list[tuple[str, torch.Tensor]] = []
    for t, vals in zip(group, values):
        errors = None if exhaustive or len(vals) == 1 else cache.local_error(t.name, vals)
        n = len(vals) if errors is None or errors[0] <= 0.0 else 1
        plans.append((len(items), n, errors))
        items.extend((t.name, v) for v in vals[:n])
    kls = cache.kl_many(items)
    return [_from_kls(t, dict(zip(t.types[:n], kls[start:start + n])), errors)
            for t, (start, n, errors) in zip(group, plans)]


def anchor_layers(layers: list[int], k: int) -> set[int]:
    """`k` of the decoder `layers` evenly spaced, the first and the last included (every layer
    when k is 0 or at least their number)."""
    if k == 0 or k >= len(layers):
        return set(layers)
    return {layers[int(i)] for i in np.linspace(0, len(layers) - 1, k).round()}


def _gain(costs: dict[str, float], types: tuple[str, ...],
          errors: list[float] | None) -> float | None:
    """KL per unit of output error of a measured tensor: from its first candidate measured
    with a positive error and KL."""
    for g, e in zip(types, errors or []):
        if g in costs and e > 0.0 and costs[g] > 0.0:
            return costs[g] / e
    return None


def _interpolated(work: list[TensorChoice], results: dict[str, Measured],
                  errors: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """Costs of the unanchored tensors (`errors`: their output errors): the error times the gain
    of their role, log-linear in the layer index between the anchors' gains. A role with no gain
    measured is left out (measured end to end by the caller)."""
    points: dict[str, list[tuple[int, float]]] = {}
    for t in work:
        if t.name in results and t.layer is not None:
            gain = _gain(results[t.name][0], t.types, results[t.name][2])
            if gain is not None:
                points.setdefault(t.role.value, []).append((t.layer, float(np.log(gain))))
    out = {}
    for t in work:
        if t.name not in errors or t.layer is None or t.role.value not in points:
            continue
        xs, ys = zip(*sorted(points[t.role.value]))
        gain = float(np.exp(np.interp(t.layer, xs, ys)))
        out[t.name] = {g: gain * e for g, e in zip(t.types, errors[t.name])}
    return out


def _groups(work: list[TensorChoice]) -> list[list[TensorChoice]]:
    """Tensors of one decoder layer together (one batched pass); embedding and head alone."""
    groups: list[list[TensorChoice]] = []
    for t in work:
        if groups and t.layer is not None and groups[-1][0].layer == t.layer:
            groups[-1].append(t)
        else:
            groups.append([t])
    return groups


def measure_sensitivity(
    gguf_path: str | Path,
    space: PlanSpace,
    text: str,
    *,
    imatrix: Mapping[str, np.ndarray] | None = None,
    config: SensitivityConfig = SensitivityConfig(),
    threads: int = 0,
    on_progress: ProgressFn | None = None,
    model_id: str = "",
    device: str = "cpu",
) -> SensitivityTable:
    """Measure the table (no cache). See `sensitivity_table` for the arguments. An anchored
    table of a llama-layout GGUF is measured in one streamed sweep (advisor.sensitivity.stream:
    one layer in float at a time, on `device`); the rest hold the model in float32."""
    from backends.gguf import default_threads, streamable

    t0 = time.perf_counter()
    path = Path(gguf_path)
    windows = _tokens(path, text, config)
    work = [t for t in space.tensors if not (len(t.types) == 1 and t.types[0] == "F32")]
    workers = threads or default_threads()
    anchored = anchor_layers(sorted({t.layer for t in work if t.layer is not None}),
                             config.anchors)
    args = (path, windows, config, work, anchored, imatrix, workers, on_progress)
    if config.anchors and streamable(path) and _float32_bytes(path) > IN_MEMORY_MAX:
        results, scaled, n_scored, extra = _streamed(*args, device=device)
    else:
        results, scaled, n_scored, extra = _in_memory(*args)
    costs: dict[str, dict[str, float]] = {t.name: {"F32": 0.0} for t in space.tensors
                                          if t not in work}
    costs.update({n: r[0] for n, r in results.items()} | scaled)
    measured = {n: r[1] for n, r in results.items()} | {n: () for n in scaled}
    seconds = time.perf_counter() - t0
    log.info("sensitivity of %d tensors (%d measured KLs, %d anchored layers, %d threads) in "
             "%.1f s", len(work), sum(len(v) for v in measured.values()), len(anchored),
             workers, seconds)
    return SensitivityTable(
        space=space, costs={t.name: costs[t.name] for t in space.tensors},
        measured={t.name: measured[t.name] for t in work}, config=config, model_id=model_id,
        text_sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        imatrix_sha256=imatrix_digest(imatrix), n_tokens=int(windows.size),
        n_scored=n_scored, seconds=seconds,
        extra=extra | {"threads": workers, "anchored_layers": sorted(anchored)},
    )


IN_MEMORY_MAX = 1 << 30
"""A model whose float32 copy is at most this is measured in memory, larger ones streamed: both
give the same table (tests/sensitivity/test_stream.py), and on 2 cores the in-memory replay of
the embedded model took 9.5 s against 15.3 s streamed (anchors 8, no imatrix; at 360M: 30.0 s
against 33.8 s, peak RSS 2.6 GiB against 1.15 GiB)."""


def _float32_bytes(path: Path) -> int:
    from backends.gguf import header_of

    return 4 * sum(int(np.prod([int(x) for x in t.ne])) for t in header_of(path).tensors)


Costs = tuple[dict[str, Measured], dict[str, dict[str, float]], int, dict[str, Any]]


def _streamed(path: Path, windows: np.ndarray, config: SensitivityConfig,
              work: list[TensorChoice], anchored: set[int],
              imatrix: Mapping[str, np.ndarray] | None, workers: int,
              on_progress: ProgressFn | None, device: str = "cpu") -> Costs:
    """The anchored table from streamed sweeps: the anchors (and embedding, head) measured, the
    rest scaled; a tensor left without a gain of its role is measured by a second sweep."""
    from advisor.sensitivity.stream import pool_quantizer, sweep
    from backends.gguf import GGUFWeights

    names = GGUFWeights.names(path)
    absent = [t.name for t in work if t.name not in names]
    if absent:
        raise BadInput(f"the model has no tensors {absent[:3]} of the plan space",
                       "build the plan space from the same model")
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if on_progress is not None:
            on_progress(min(done, len(work)), len(work))

    results: dict[str, Measured] = {}
    measure = {t.name for t in work if t.layer is None or t.layer in anchored}
    with torch_threads(workers), torch.no_grad(), \
            ThreadPoolExecutor(max_workers=workers, thread_name_prefix="quantize") as pool:
        quantize = pool_quantizer(_encoded, imatrix, pool)
        for round_ in range(2):
            kls, errors, n_scored = sweep(path, windows, config.scored_from, work, measure,
                                          quantize, torch.device(device),
                                          on_tensor=tick if round_ == 0 else None,
                                          row_sample=config.row_sample)
            for t in work:
                if t.name in measure:
                    results[t.name] = _from_kls(t, kls[t.name], errors.get(t.name))
            scaled = _interpolated(work, results, {n: e for n, e in errors.items()
                                                   if n not in results})
            measure = {t.name for t in work if t.name not in results and t.name not in scaled}
            if not measure:
                break
    return results, scaled, n_scored, {"streamed": True, "device": device}


def _from_kls(t: TensorChoice, kls: dict[str, float], errors: list[float] | None) -> Measured:
    """A measured tensor's costs: its measured KLs, the other candidates scaled from the first
    by their output errors."""
    if len(kls) == len(t.types) or not errors:
        return {g: kls[g] for g in t.types}, t.types, errors
    anchor = kls[t.types[0]]
    gain = anchor / errors[0]
    return ({g: (anchor if i == 0 else gain * e) for i, (g, e) in enumerate(zip(t.types, errors))},
            t.types[:1], errors)


def _in_memory(path: Path, windows: np.ndarray, config: SensitivityConfig,
               work: list[TensorChoice], anchored: set[int],
               imatrix: Mapping[str, np.ndarray] | None, workers: int,
               on_progress: ProgressFn | None) -> Costs:
    """The table with the model in float32 (runner.LayerCache), layers measured in parallel."""
    from advisor.sensitivity.loader import load_gguf_model

    loaded = load_gguf_model(path)
    absent = [t.name for t in work if t.name not in loaded.params]
    if absent:
        raise BadInput(f"the model has no tensors {absent[:3]} of the plan space",
                       "build the plan space from the same model")
    groups = _groups(work)
    results: dict[str, Measured] = {}
    done = 0
    errors: dict[str, list[float]] = {}  # unanchored tensors: output error per candidate

    def task(group: list[TensorChoice], measure: bool) -> list[Measured | list[float] | None]:
        values = []
        for t in group:
            w = loaded.params[t.name].detach().numpy()
            imp = imatrix.get(t.name) if imatrix is not None else None
            values.append(_quantized(w, t.types, imp))
        with torch.no_grad():  # grad mode is per thread
            if measure:
                return list(_measure_group(cache, group, values, config.exhaustive))
            return [cache.local_error(t.name, v) for t, v in zip(group, values)]

    def run(batches: list[tuple[list[TensorChoice], bool]]) -> None:
        nonlocal done
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sensitivity") as pool:
            futures = {pool.submit(task, g, m): (g, m) for g, m in batches}
            for fut in as_completed(futures):
                group, measure = futures[fut]
                for t, r in zip(group, fut.result()):
                    if measure:
                        results[t.name] = r  # type: ignore[assignment]
                    elif r is not None:
                        errors[t.name] = r  # type: ignore[assignment]
                done += len(group) if measure else 0
                if on_progress is not None:
                    on_progress(min(done, len(work)), len(work))

    # Parallel over layers, one intra-op thread each: no OpenMP barrier to stall when the cores
    # are shared (2 intra-op threads ran 4-5x slower than 1 on a loaded 2-core host), and the
    # quantizer (ctypes releases the GIL) overlaps the forward passes.
    with torch_threads(1), torch.no_grad():
        t_ref = time.perf_counter()
        cache = LayerCache(loaded, windows, config.scored_from)
        log.info("reference pass: %.1f s", time.perf_counter() - t_ref)
        run([(g, g[0].layer is None or g[0].layer in anchored) for g in groups])
        scaled = _interpolated(work, results, errors)
        done += len(scaled)
        # unanchored tensors with no output error or no gain of their role: measured end to end
        rest = [t for t in work if t.name not in results and t.name not in scaled]
        run([(g, True) for g in _groups(rest)])
    return results, scaled, cache.n_scored, {"load_seconds": loaded.seconds}


def sensitivity_table(
    model: str | Path,
    space: PlanSpace | None = None,
    *,
    text: str | None = None,
    imatrix: Mapping[str, np.ndarray] | None = None,
    config: SensitivityConfig = SensitivityConfig(),
    threads: int = 0,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    on_progress: ProgressFn | None = None,
    device: str = "cpu",
) -> SensitivityTable:
    """The sensitivity table of a GGUF model, from the cache when measured before.

    model: an alias or a .gguf path. space: default `gguf_plan_space(spec, imatrix=...)`.
    text: default the project's calibration text. imatrix: llama.cpp tensor name -> importance
    per column (e.g. `backends.gguf.imatrix.imatrix_for(path, text).values`); None = none.
    threads: layers measured at once (0: the cores this process may use), each with one torch
    thread.
    The cache lives under `cache_dir`, else $QUANT_ADVISOR_CACHE, else ~/.cache/quant-advisor;
    its key is the model's content identity, the text's hash, the plan space (menu, floors),
    the imatrix's hash (or none) and `config`.
    """
    from advisor.artifact.cache import cache_root, file_identity
    from advisor.inspect import inspect_model, resolve_model
    from advisor.textdata import default_calibration_text

    path = resolve_model(str(model))
    spec = inspect_model(path)
    if spec.format is not SourceFormat.GGUF:
        raise BadInput(f"{path} is not a GGUF file", "convert the model to GGUF first")
    if space is None:
        space = gguf_plan_space(spec, imatrix=imatrix is not None)
    if space.imatrix != (imatrix is not None):
        raise BadInput(f"the plan space was built with imatrix={space.imatrix}, but an imatrix "
                       f"was {'not ' if imatrix is None else ''}given",
                       "build the space and the table with the same imatrix setting")
    text = default_calibration_text() if text is None else text
    model_id = file_identity(path)
    key = cache_key(model_id, hashlib.sha256(text.encode("utf-8")).hexdigest(), space,
                    imatrix_digest(imatrix), config)
    where = cache_path(cache_root(cache_dir), key)
    if use_cache:
        cached = load_cached(where)
        if cached is not None:
            log.info("sensitivity table from cache %s", where)
            if on_progress is not None:
                on_progress(1, 1)
            return cached
    table = measure_sensitivity(path, space, text, imatrix=imatrix, config=config,
                                threads=threads, on_progress=on_progress,
                                model_id=model_id, device=device)
    if use_cache:
        save_cached(where, table)
    return table
