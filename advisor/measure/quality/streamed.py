"""The reference logits of a large float model, one decoder layer in float at a time (issue 17).

llama.cpp maps the whole F16 reference to compute its logits: 5,069 MiB of peak RSS for the
measure stage of a 1.7B model and 7,460 MiB at 3.0B, against issue 17's bound of 0.5 x the F16
bytes + 1 GiB (2,656 and 3,856 MiB). From 400M parameters on
(backends.gguf.layers.STREAM_FROM, the importance matrix's threshold too), a model of the
llama layout is instead run by backends.gguf.layers' Sweep: every window at once through one
layer at a time, read from the file with pread (no mapping; the next layer read while this one
runs), then the head a chunk of vocabulary rows at a time, one window at a time. Peak memory: two
layers in float32, the windows' activations, one window's logits. On the random-weight 1.7B, 8
windows of 512 tokens: 113 s and 1,310 MiB peak RSS (the whole process, torch included).

The numerics are torch's float32 on the F16 weights, where llama.cpp's F16 matmuls round their
activations to F16: mean KL(llama.cpp's F16 reference || streamed) 1.35e-6 nats on the embedded
model's F16 copy (4 windows of 512 tokens, top-1 identical) and 1.43e-6 on the 1.7B, three orders
below a Q8_0 candidate's KL. The cache key names the runtime ("torch-stream"), so the two
references are never mixed in one cache.
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path

import numpy as np

from advisor.progress.clock import release_freed_memory
from advisor.textdata import WindowConfig, make_windows


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

    from backends.gguf import HEAD_CHUNK, GGUFWeights, Sweep, run_decoder
    from backends.hf import resolve_device, torch_threads

    weights = GGUFWeights(path)
    try:
        with torch_threads(threads), torch.no_grad():
            s = Sweep(weights, windows, cfg.first_scored, torch.device(resolve_device(device)))
            hidden = run_decoder(s, s.embed(weights.rows("token_embd.weight", s.tokens)))
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
        release_freed_memory()
