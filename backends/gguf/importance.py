"""The importance matrix of a large float model from a streamed sweep (issue 17's memory bound).

backends.gguf.imatrix computes it inside llama.cpp, which maps the whole F16 file (3.42 GB for a
1.7B model, against a bound of 2,656 MiB = 2.79 GB). From
backends.gguf.layers.STREAM_FROM parameters a model of the llama layout is instead run one layer
in float at a time (backends.gguf.layers.run_decoder), all calibration chunks at once: a forward
pre-hook on every linear of a decoder layer adds x_j^2 of its input rows per column j, as
llama-imatrix's collector does for every `blk.*` matmul (the head is left out, as there by
default). The chunks are the collector's (512 tokens, BOS first);
values are sums / rows. The activations are torch's float32 where llama.cpp's come out of its F16
matmuls: on the embedded model's F16 copy (4 chunks, the project's calibration text) the values
differ from llama.cpp's by a median 5.5e-5 relative (p99 6.5e-4, at most 1.8e-2), and
blk.5.ffn_down quantized with either is 99.97% byte-identical in IQ4_NL and 99.99% in Q4_K.
Time there: 18.5 s against llama.cpp's 11.0 s (2 cores, beside a benchmark run, before the
sweep read the next layer while one runs). The cache keeps
the two apart (backends.gguf.imatrix.imatrix_for: "-stream").
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from advisor.progress.clock import release_freed_memory
from backends.gguf.layers import GGUFWeights, Sweep, run_decoder


def streamed_imatrix(path: Path, chunks: list[list[int]], *, device: str = "cpu"
                     ) -> dict[str, np.ndarray]:
    """llama.cpp tensor name -> float32 mean of x_j^2 over every row the tensor multiplied, for
    the decoder's linears, over `chunks` (token lists of one length) run as one batch. Run it
    under backends.hf.torch_threads and torch.no_grad()."""
    windows = np.asarray(chunks, dtype=np.int64)
    weights = GGUFWeights(path)
    sums: dict[str, torch.Tensor] = {}
    rows: dict[str, int] = {}
    try:
        s = Sweep(weights, windows, 0, torch.device(device))

        def collect(i: int, layer: torch.nn.Module) -> Callable[[], None]:
            handles = []
            for mname, mod in layer.named_modules():
                name = weights.gguf_name(f"model.layers.{i}.{mname}.weight")
                if isinstance(mod, torch.nn.Linear) and name is not None:
                    def hook(_m: Any, args: tuple[Any, ...], _n: str = name) -> None:
                        x = args[0].detach().reshape(-1, args[0].shape[-1]).double()
                        sums[_n] = sums[_n] + (x * x).sum(0) if _n in sums else (x * x).sum(0)
                        rows[_n] = rows.get(_n, 0) + x.shape[0]
                    handles.append(mod.register_forward_pre_hook(hook))

            def remove() -> None:
                for h in handles:
                    h.remove()
            return remove

        run_decoder(s, s.embed(weights.rows("token_embd.weight", s.tokens)), collect)
    finally:
        weights.close()
        release_freed_memory()
    return {n: (v / rows[n]).cpu().numpy().astype(np.float32) for n, v in sums.items()}
