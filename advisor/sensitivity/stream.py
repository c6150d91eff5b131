"""The anchored sensitivity table in one streamed sweep: one decoder layer in float at a time.

advisor.sensitivity.runner holds the whole model in float32 (2x its F16 bytes) and replays the
layers after each measured one. Here the model is a skeleton on torch's meta device; the sweep
goes through the layers once, in order, each materialized from the GGUF by backends.gguf.layers
(libggml dequantizes it, transformers' own tensor processor un-permutes q/k), run, and dropped:

- the reference hidden state goes through the layer; the inputs of its linears are recorded on
  the way (forward pre-hooks) for the output errors ||(W'-W)x||^2 of every candidate;
- at an anchor layer each measured candidate's output joins a batch of perturbed hidden states
  that every later layer runs with the reference (so every layer is materialized once);
- the embedding enters as the rows of the calibration tokens only; an untied head (and a tied
  embedding's head) is scored in chunks of vocabulary rows, never whole in float32.

Peak memory is one layer in float32, its candidates one tensor at a time, the activations of
the perturbed batch and the scored logits: not the model. `device` runs the forward passes on an
accelerator (the quantizer runs on the CPU, as llama.cpp's does). Only FAST_ARCHS (llama
layout) are streamed; the others go through runner.LayerCache (tests/sensitivity check that both
give the same table).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, overload

import numpy as np
import torch

from advisor.space.choices import TensorChoice
from backends.gguf import GGUFWeights, Sweep

SCORE_GROUP = 8  # perturbed candidates scored per pass through the head
MIN_SAMPLED_ROWS = 64  # a tensor's row sample is never smaller (else every row is quantized)


Prepared = tuple["np.ndarray | None", Sequence[np.ndarray], "Sequence[np.ndarray] | None"]
"""A tensor's sampled rows (None: all), its candidates on them, its cheapest candidate whole
(None: not measured end to end)."""
Quantizer = Callable[[TensorChoice, np.ndarray], Sequence[np.ndarray]]
"""A tensor's candidate values (cheapest first), given its float32 weight."""
Encoded = tuple[np.ndarray, "int | None"]
"""A candidate as GGML bytes and their type id, or float32 values and None."""


def decoded(data: np.ndarray, type_id: int | None, shape: tuple[int, ...]) -> np.ndarray:
    """The float32 values of an Encoded candidate of a tensor of `shape` (libggml's own
    dequantization, as llama.cpp's matmuls read the type)."""
    from kernels.ggml_quant import dequantize

    if type_id is None:
        return data.reshape(shape)
    return dequantize(data, type_id, (int(np.prod(shape[:-1])), shape[-1])).reshape(shape)


class Candidates(Sequence[np.ndarray]):
    """A tensor's candidates kept as GGML bytes, each decoded to float32 when read. Held as
    float32, the candidates of the layer measured and of the one prepared beside it were the
    sensitivity stage's peak: 2,781 MiB for a 1.7B model with the importance-matrix menu (11
    types), over issue 17's bound of 2,656 MiB. Kept as bytes a weight takes 0.33 (Q2_K) to 1.06
    (Q8_0) bytes instead of 4; with them that run peaked at 2,305 MiB in this stage."""

    def __init__(self, items: list[Encoded], shape: tuple[int, ...]) -> None:
        self._items, self._shape = items, shape

    def __len__(self) -> int:
        return len(self._items)

    @overload
    def __getitem__(self, i: int) -> np.ndarray: ...

    @overload
    def __getitem__(self, i: slice) -> Candidates: ...

    def __getitem__(self, i: int | slice) -> np.ndarray | Candidates:
        if isinstance(i, slice):
            return Candidates(self._items[i], self._shape)
        return decoded(*self._items[i], self._shape)


def mean_kl(ref: torch.Tensor, lq: torch.Tensor, times: int) -> list[float]:
    """Mean KL(ref || candidate) for `times` candidates stacked along the first dimension."""
    n = ref.shape[0]
    p = ref.exp()
    return [float((p * (ref - lq[i * n:(i + 1) * n])).sum(-1).clamp_min(0.0).mean())
            for i in range(times)]


def sweep(path: Path, windows: np.ndarray, first_scored: int, work: list[TensorChoice],
          measure: set[str], quantize: Quantizer, device: torch.device,
          on_tensor: Callable[[], None] | None = None, row_sample: int = 1,
          ) -> tuple[dict[str, dict[str, float]], dict[str, list[float]], int]:
    """KLs of the candidates of the tensors in `measure` (each alone: the cheapest, or every one
    when the cheapest leaves its output unchanged or the tensor has no output error), and the
    output errors of every decoder tensor's candidates. Returns (KL per tensor and measured
    type, errors per tensor, tokens scored)."""
    w = GGUFWeights(path)
    try:
        return _sweep(Sweep(w, windows, first_scored, device), work, measure, quantize,
                      on_tensor, row_sample)
    finally:
        w.close()


def _sweep(s: Sweep, work: list[TensorChoice], measure: set[str], quantize: Quantizer,
           on_tensor: Callable[[], None] | None, row_sample: int,
           ) -> tuple[dict[str, dict[str, float]], dict[str, list[float]], int]:
    kls: dict[str, dict[str, float]] = {}
    errors: dict[str, list[float]] = {}
    labels: list[tuple[str, str]] = []  # (tensor, type) of each perturbed batch, in order
    head_labels: list[tuple[str, str]] = []  # an untied head's candidates, scored at the end
    by_layer: dict[int | None, list[TensorChoice]] = {}
    for t in work:
        by_layer.setdefault(t.layer, []).append(t)
    w = s.w
    ref_rows = w.rows("token_embd.weight", s.tokens)
    hidden = s.embed(ref_rows)
    perturbed: list[torch.Tensor] = []
    for t in by_layer.get(None, []):
        if t.name not in measure:
            continue
        if t.name == "token_embd.weight":  # (with the head, when tied)
            for g, rows in zip(t.types, quantize(t, ref_rows)):
                perturbed.append(s.embed(rows))
                labels.append((t.name, g))
        elif t.name == "output.weight":
            head_labels += [(t.name, g) for g in t.types]
        if on_tensor:
            on_tensor()
    batch = torch.cat(perturbed) if perturbed else None
    def prepare(i: int) -> tuple[dict[str, str | None], dict[str, np.ndarray],
                                 dict[str, Prepared]]:
        """Layer i's weights read and its tensors' candidates quantized (the next layer's, in
        the background, while this one runs: the quantizer releases the GIL): every candidate
        on the sampled rows, the cheapest whole where it is measured end to end."""
        local = {n: w.gguf_name(f"model.layers.{i}." + n)
                 for n, _ in s.decoder.layers[i].named_parameters()}
        weights = {g: w.tensor(g) for g in local.values() if g is not None}
        out = {}
        for t in by_layer.get(i, []):
            wt = weights[t.name]
            rows = sampled_rows(wt.shape[0], row_sample)
            sub = quantize(t, wt if rows is None else wt[rows])
            first = None
            if t.name in measure:  # the cheapest candidate whole, for its end-to-end KL
                first = sub[:1] if rows is None else quantize(_only(t, t.types[0]), wt)
            out[t.name] = (rows, sub, first)
        return local, weights, out

    ahead = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch")
    next_layer = ahead.submit(prepare, 0)
    for i in range(w.n_layers):
        local, weights, candidates = next_layer.result()
        if i + 1 < w.n_layers:
            next_layer = ahead.submit(prepare, i + 1)
        layer = s.materialize(s.decoder.layers[i], f"model.layers.{i}.", weights)
        del weights
        inputs: dict[str, torch.Tensor] = {}
        handles = []
        for mname, mod in layer.named_modules():
            name = local.get(f"{mname}.weight")
            if isinstance(mod, torch.nn.Linear) and name is not None:
                def hook(_m: Any, args: tuple[Any, ...], _n: str = name) -> None:
                    inputs[_n] = args[0].detach().reshape(-1, args[0].shape[-1])
                handles.append(mod.register_forward_pre_hook(hook))
        out = s.run_layer(layer, i, hidden)
        for h in handles:
            h.remove()
        new: list[torch.Tensor] = []
        params = dict(layer.named_parameters())
        by_gguf = {v: k for k, v in local.items() if v is not None}
        for t in by_layer.get(i, []):
            p = params[by_gguf[t.name]]
            picked, sub, whole = candidates.pop(t.name)
            x = inputs.get(t.name)
            errs = None
            if x is not None:  # sum over the sampled rows, scaled to all of them
                target = p if picked is None else p[torch.from_numpy(picked).to(s.device)]
                scale = 1.0 if picked is None else p.shape[0] / len(picked)
                errs = []
                for v in sub:
                    delta = torch.from_numpy(v).to(s.device).reshape(target.shape) - target
                    errs.append(float((x @ delta.T).pow(2).sum() / x.shape[0] * scale))
                errors[t.name] = errs
            if t.name in measure:
                n = len(t.types) if errs is None or errs[0] <= 0.0 else 1
                if n == 1 and whole is not None:
                    vals = whole
                else:  # every candidate whole
                    vals = sub if picked is None else quantize(t, p.detach().cpu().numpy())
                saved = p.data
                for g, v in zip(t.types[:n], vals[:n]):
                    p.data = torch.from_numpy(v).to(s.device).reshape(saved.shape)
                    new.append(s.run_layer(layer, i, hidden))
                    labels.append((t.name, g))
                p.data = saved
            if on_tensor:
                on_tensor()
        if batch is not None:
            batch = s.run_layer(layer, i, batch)
        if new:
            batch = torch.cat(([batch] if batch is not None else []) + new)
        hidden = out
        del layer
    ahead.shutdown()
    def ref_head(a: int, b: int) -> np.ndarray:
        return w.rows(s.head_name, np.arange(a, b))

    ref = s.logprobs(hidden, ref_head)
    if batch is not None:
        def block(k: int) -> torch.Tensor:
            return batch[k * s.batch:(k + 1) * s.batch]  # type: ignore[index]

        # a tied embedding's candidates score with their own head; the rest share the file's,
        # SCORE_GROUP candidates per pass through it
        own = [k for k, (name, _) in enumerate(labels) if s.tied and name == "token_embd.weight"]
        shared = [k for k in range(len(labels)) if k not in own]
        for a in range(0, len(shared), SCORE_GROUP):
            part = shared[a:a + SCORE_GROUP]
            lq = s.logprobs(torch.cat([block(k) for k in part]), ref_head)
            for k, kl in zip(part, mean_kl(ref, lq, len(part))):
                kls.setdefault(labels[k][0], {})[labels[k][1]] = kl
        for k in own:
            name, g = labels[k]
            t = next(x for x in work if x.name == name)
            lq = s.logprobs(block(k), _quantized_rows(s, t, g, quantize))
            kls.setdefault(name, {})[g] = mean_kl(ref, lq, 1)[0]
    for name, g in head_labels:
        t = next(x for x in work if x.name == name)
        lq = s.logprobs(hidden, _quantized_rows(s, t, g, quantize))
        kls.setdefault(name, {})[g] = mean_kl(ref, lq, 1)[0]
    return kls, errors, int(ref.shape[0])


def _only(t: TensorChoice, gtype: str) -> TensorChoice:
    """`t` with the one candidate `gtype`."""
    index = t.types.index(gtype)
    return TensorChoice(t.name, t.role, t.layer, t.shape, (gtype,), (t.nbytes[index],))


def sampled_rows(n_rows: int, every: int) -> np.ndarray | None:
    """Every `every`-th row for the candidates' output errors (None: all rows). A ggml block
    never crosses a row, so a row quantizes alone as in the whole tensor; the error is a sum
    over rows, estimated from the sample. Fewer than MIN_SAMPLED_ROWS rows: all of them."""
    if every <= 1 or n_rows // every < MIN_SAMPLED_ROWS:
        return None
    return np.arange(0, n_rows, every)


def _quantized_rows(s: Sweep, t: TensorChoice, gtype: str,
                    quantize: Quantizer) -> Callable[[int, int], np.ndarray]:
    """Head rows a..b as candidate `gtype` of `t` leaves them (blocks never cross a row)."""
    one = _only(t, gtype)
    return lambda a, b: quantize(one, s.w.rows(t.name, np.arange(a, b)))[0]


def pool_quantizer(encode: Callable[[np.ndarray, str, np.ndarray | None], Encoded],
                   imatrix: Mapping[str, np.ndarray] | None,
                   pool: ThreadPoolExecutor) -> Quantizer:
    """Candidates of a tensor, its types quantized in parallel on `pool` (libggml releases the
    GIL) and kept as bytes (Candidates)."""

    def run(t: TensorChoice, weight: np.ndarray) -> Sequence[np.ndarray]:
        imp = imatrix.get(t.name) if imatrix is not None else None
        futures = [pool.submit(encode, weight, g, imp) for g in t.types]
        return Candidates([f.result() for f in futures], weight.shape)

    return run
