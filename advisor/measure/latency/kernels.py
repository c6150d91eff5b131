"""Timing this host's llama.cpp kernels per GGML type (issue 18), for
`advisor.calibration.kernels`, which keeps and sums them.

Before a bench, llama.cpp itself (through the GGUF backend's runner, what `advisor bench` times)
runs a synthetic model per type: zero-filled weights (timing does not depend on the values), the
model's layer shape rounded up to whole 256-weight blocks and capped at 1024 wide
(`calibration.kernels.shape_for`), the bench's thread count, a 4-token vocabulary. Per type,
decode steps at depth 2 and 8 give the time per layer, hence per weight (the layer's fixed costs
pro rata); 64-token prompts the prefill time per weight and token; Q8_0 at context 64 and 576
the attention time per layer, head and context token. About 0.3 s per type at SmolLM2-135M's
shape on a 2-core VM, once per host, shape and type.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from advisor.calibration.kernels import Shape, save, shape_for, untimed
from advisor.errors import AdvisorError

log = logging.getLogger(__name__)

DEPTHS = (2, 8)
PROMPT = 64
PROMPTS = 3  # the fastest of three prompts: a prompt is one sample, a decode step twelve
STEPS = 12
LONG_CONTEXT = 512
VOCAB = 4


def _write(path: Path, shape: Shape, type_name: str, layers: int) -> None:
    """A llama-layout GGUF of `layers` zero-filled layers in `type_name` (norms 1, no vocab)."""
    import gguf

    from advisor.formats import ggml_tensor_bytes

    w = gguf.GGUFWriter(str(path), "llama")
    a = "llama"
    for key, value in (("context_length", LONG_CONTEXT + 64), ("embedding_length", shape.hidden),
                       ("block_count", layers), ("feed_forward_length", shape.ffn),
                       ("attention.head_count", shape.heads),
                       ("attention.head_count_kv", shape.kv_heads),
                       ("attention.key_length", shape.head_dim),
                       ("attention.value_length", shape.head_dim), ("vocab_size", VOCAB)):
        w.add_uint32(f"{a}.{key}", value)
    w.add_float32(f"{a}.attention.layer_norm_rms_epsilon", 1e-5)
    w.add_string("tokenizer.ggml.model", "none")

    def mat(name: str, rows: int, cols: int, t: str = type_name) -> None:
        nbytes = ggml_tensor_bytes(t, (rows, cols))
        w.add_tensor(name, np.zeros((rows, nbytes // rows), dtype=np.uint8),
                     raw_dtype=gguf.GGMLQuantizationType[t])

    q, kv = shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim
    mat("token_embd.weight", VOCAB, shape.hidden, "F16")
    mat("output.weight", VOCAB, shape.hidden, "F16")
    w.add_tensor("output_norm.weight", np.ones(shape.hidden, dtype=np.float32))
    for i in range(layers):
        b = f"blk.{i}."
        for norm in ("attn_norm", "ffn_norm"):
            w.add_tensor(b + norm + ".weight", np.ones(shape.hidden, dtype=np.float32))
        for name, rows, cols in (("attn_q", q, shape.hidden), ("attn_k", kv, shape.hidden),
                                 ("attn_v", kv, shape.hidden), ("attn_output", shape.hidden, q),
                                 ("ffn_gate", shape.ffn, shape.hidden),
                                 ("ffn_up", shape.ffn, shape.hidden),
                                 ("ffn_down", shape.hidden, shape.ffn)):
            mat(b + name + ".weight", rows, cols)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def _timed(path: Path, threads: int, context: int) -> tuple[float, float]:
    """(seconds of a PROMPT-token prompt, median seconds of a decode step at `context`), by the
    GGUF backend's runner: what `advisor bench` times."""
    from backends import get_backend

    runner = get_backend("gguf").load(path, n_ctx=PROMPT + LONG_CONTEXT + STEPS + 1,
                                      threads=threads)
    try:
        runner.generate([0] * PROMPT, 1)  # warm: pages mapped, threads started
        # the fastest of PROMPTS prompts (a prompt is one sample; a decode step STEPS)
        prompt = min(runner.generate([0] * PROMPT, 1)[1][0] for _ in range(PROMPTS))
        times = runner.generate([0] * max(context, PROMPT), STEPS + 1)[1]
        return prompt, float(np.median(np.diff(times)[2:]))
    finally:
        runner.close()


def _per_layer(shape: Shape, type_name: str, threads: int, tmp: Path) -> tuple[float, float]:
    """(prompt seconds, decode seconds) of one layer: the difference of the two depths."""
    out = []
    for depth in DEPTHS:
        path = tmp / f"{type_name}-{depth}.gguf"
        _write(path, shape, type_name, depth)
        out.append(_timed(path, threads, PROMPT))
        path.unlink()
    span = DEPTHS[1] - DEPTHS[0]
    return ((out[1][0] - out[0][0]) / span, (out[1][1] - out[0][1]) / span)


def measure(shape: Shape, types: Iterable[str], threads: int,
            attention: bool = True) -> dict[str, Any]:
    """Time every type of `types` (and the attention) at `shape` on this host."""
    entry: dict[str, Any] = {"decode": {}, "prefill": {}}
    w = shape.layer_weights
    with tempfile.TemporaryDirectory(prefix="qa-kernels-") as d:
        tmp = Path(d)
        for t in sorted(set(types)):
            prompt, step = _per_layer(shape, t, threads, tmp)
            entry["decode"][t] = max(step, 1e-12) / w
            entry["prefill"][t] = max(prompt, 1e-12) / (w * PROMPT)
        if not attention:
            return entry
        path = tmp / "attention.gguf"
        _write(path, shape, "Q8_0", DEPTHS[1])
        short = _timed(path, threads, PROMPT)[1]
        long = _timed(path, threads, PROMPT + LONG_CONTEXT)[1]
        entry["attention"] = max(long - short, 0.0) / (DEPTHS[1] * shape.heads * LONG_CONTEXT)
    return entry


def ensure(features: dict[str, float], host: str, threads: int = 0) -> bool:
    """Time what this host (`host`: its key) has no timings of for a plan, before a bench.
    False when nothing was timed. A store that cannot be written costs the calibration, never
    the bench: a warning."""
    missing, shape = untimed(features, host), shape_for(features)
    if not missing or shape is None:
        return False
    threads = threads or os.cpu_count() or 1
    t0 = time.perf_counter()
    try:
        new = measure(shape, missing - {"attention"}, threads, "attention" in missing)
    except AdvisorError as e:  # a type this llama.cpp cannot run: no timings, the bench goes on
        log.warning("kernel timings of %s failed: %s", sorted(missing), e)
        return False
    log.info("timed %s at %s in %.1f s", sorted(missing), shape.key, time.perf_counter() - t0)
    save(host, shape, new)
    return True
