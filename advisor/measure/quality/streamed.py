"""The reference logits of a large float model, one decoder layer in float at a time (issue 17).

llama.cpp maps the whole F16 reference to compute its logits: 5.07 GB of peak RSS for the
measure stage of a 1.7B model and 7.46 GB at 3.0B, against issue 17's bound of 0.5 x the F16
bytes + 1 GiB (2.66 and 3.86 GB). From STREAM_FROM parameters on, a model of the llama layout is
instead run by the sensitivity stage's streamed sweep (advisor.sensitivity.stream.Sweep): every
window at once through one layer at a time, read from the file with pread (no mapping), then the
head a chunk of vocabulary rows at a time, one window at a time. Peak memory: one layer in
float32, the windows' activations, one window's logits.

The numerics then are torch's float32 on the F16 weights, where llama.cpp's F16 matmuls round
their activations to F16 on the way in: the two references differ by a KL of the size measured in
tests/measure/test_streamed_reference.py (mean KL(llama.cpp F16 || streamed) on the embedded
model's F16 copy, see STREAM_FROM), far below what any candidate's quantization costs. The cache
key names the runtime ("torch-stream"), so the two references are never mixed in one cache.
"""

from __future__ import annotations

from collections.abc import Generator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from advisor.textdata import WindowConfig, make_windows

STREAM_FROM = 4e8
"""Parameters from which a streamable reference is computed by the sweep: issue 17's memory bound
applies from 453M parameters up, and a llama.cpp F16 reference there already needs about 0.9 GB
mapped besides the process (the 360M row of BENCHMARKS.md section 2 peaked at 1.79 GB in its
measure stage). Below it llama.cpp computes the reference, as it serves the candidates."""


def streams(path: Path, n_params: int) -> bool:
    """Whether the reference GGUF at `path` (of `n_params` parameters) is computed streamed."""
    from advisor.sensitivity.stream import streamable

    return n_params >= STREAM_FROM and streamable(path)


def tokenized_windows(path: Path, text: str, cfg: WindowConfig) -> np.ndarray:
    """The evaluation windows as the candidates' runner cuts them (llama.cpp's tokenizer, its
    BOS first), with the vocabulary alone loaded: no weights mapped."""
    from backends.gguf import LlamaSession

    with LlamaSession(path, n_ctx=cfg.n_ctx, n_batch=cfg.n_ctx, threads=1,
                      vocab_only=True) as s:
        return make_windows(s.tokenize(text), cfg, s.bos if s.add_bos else None)


def streamed_logits(path: Path, windows: np.ndarray, cfg: WindowConfig, *, threads: int = 0,
                    device: str = "auto") -> Generator[np.ndarray, None, None]:
    """Float32 logits [cfg.n_scored, vocab] at the scored positions of each window, in order.
    The decoder runs once for all windows, on `device` (a `--device` value); the head then runs
    one window at a time."""
    import torch

    from advisor.sensitivity.stream import HEAD_CHUNK, GGUFWeights, Sweep
    from backends.hf import resolve_device, torch_threads

    weights = GGUFWeights(path)
    try:
        with torch_threads(threads), torch.no_grad():
            s = Sweep(weights, windows, cfg.first_scored, torch.device(resolve_device(device)))
            hidden = s.embed(weights.rows("token_embd.weight", s.tokens))

            def read(i: int) -> dict[str, np.ndarray]:
                names = (weights.gguf_name(f"model.layers.{i}.{n}")
                         for n, _ in s.decoder.layers[i].named_parameters())
                return {g: weights.tensor(g) for g in names if g is not None}

            # the next layer is read and decoded while this one runs (libggml releases the GIL)
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch") as ahead:
                upcoming = ahead.submit(read, 0)
                for i in range(weights.n_layers):
                    values = upcoming.result()
                    if i + 1 < weights.n_layers:
                        upcoming = ahead.submit(read, i + 1)
                    layer = s.materialize(s.decoder.layers[i], f"model.layers.{i}.", values)
                    del values
                    hidden = s.run_layer(layer, i, hidden)
                    del layer
            last = cfg.first_scored + cfg.n_scored
            normed = s.norm(hidden)[:, cfg.first_scored:last, :]
            del hidden
            vocab = int(weights.config.vocab_size)
            for k in range(normed.shape[0]):
                logits = np.empty((cfg.n_scored, vocab), dtype=np.float32)
                for a in range(0, vocab, HEAD_CHUNK):
                    b = min(a + HEAD_CHUNK, vocab)
                    head = torch.from_numpy(weights.rows(s.head_name, np.arange(a, b)))
                    logits[:, a:b] = (normed[k] @ head.to(s.device).T).cpu().numpy()
                yield logits
    finally:
        weights.close()
