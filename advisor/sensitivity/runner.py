"""The reference forward pass, cached per decoder layer, and the KL of one perturbed weight.

One forward pass of the float32 reference over the calibration windows records (forward hooks) the
input of every decoder layer, the keyword arguments the layers receive (causal mask, rotary
tables), the input of every linear layer, the last hidden state, and the reference
log-probabilities at the scored positions. A weight of layer L replaced by its quantized value
then reruns only layers L..end, and several replacements in layer L go through layers L+1..end as
one batch; the embedding reruns everything, an untied LM head only the head. The shared model is
never modified (a replaced layer runs as a private copy), so threads may evaluate concurrently.

The replay is checked once against the model's own forward pass (KL of the unmodified replay
< 1e-8 nats), so an architecture whose forward does something the replay does not (a scale
between layers, a per-layer argument) is refused instead of measured wrong. Handled: keyword
arguments recorded per layer (Gemma 2's sliding/global masks), a scaled embedding (Gemma's
sqrt(hidden) `embed_scale`) and final logit soft-capping (Gemma 2).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from advisor.errors import BadInput
from advisor.sensitivity.loader import PRESET_FIX, LoadedModel
from backends.gguf import first_output, repeat_batch

log = logging.getLogger(__name__)


class LayerCache:
    """Reference activations of `loaded` on `windows` ([n_windows, n_ctx] token ids); KL is
    scored at positions first_scored..n_ctx-1 of every window."""

    def __init__(self, loaded: LoadedModel, windows: np.ndarray, first_scored: int) -> None:
        model = loaded.model
        self.params = loaded.params
        self.decoder = model.get_decoder()
        self.layers = list(self.decoder.layers)
        self.final_norm = self.decoder.norm
        self.head = model.get_output_embeddings()
        self.ids = torch.as_tensor(np.asarray(windows), dtype=torch.long)
        self.batch, self.n_ctx = self.ids.shape
        if not 0 <= first_scored < self.n_ctx:
            raise ValueError(f"first_scored={first_scored}; expected 0 <= it < {self.n_ctx}")
        self.first_scored = first_scored
        self.layer_inputs: list[torch.Tensor] = []
        self.layer_kwargs: list[dict[str, Any]] = []  # per layer: masks may differ by layer
        self.softcap = getattr(model.config, "final_logit_softcapping", None)
        self.linear_inputs: dict[str, torch.Tensor] = {}  # llama.cpp name -> [tokens, in]
        # llama.cpp name -> (decoder layer, parameter name inside that layer)
        self._where: dict[str, tuple[int, str]] = {}
        by_id = {id(p): name for name, p in self.params.items()}
        for i, layer in enumerate(self.layers):
            for local, p in layer.named_parameters():
                if id(p) in by_id:
                    self._where[by_id[id(p)]] = (i, local)
        self._record(model)
        self._check_replay(loaded.architecture)

    def layer_of(self, name: str) -> int | None:
        """Decoder layer index that holds tensor `name`; None for embedding, head, final norm."""
        where = self._where.get(name)
        return where[0] if where else None

    def _record(self, model: Any) -> None:
        handles = []

        def on_layer(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            hidden = args[0] if args else kwargs["hidden_states"]
            self.layer_inputs.append(hidden.detach().clone())
            self.layer_kwargs.append({k: v for k, v in kwargs.items()
                                      if k not in ("hidden_states", "past_key_values")}
                                     | {"use_cache": False})

        for layer in self.layers:
            handles.append(layer.register_forward_pre_hook(on_layer, with_kwargs=True))
        by_id = {id(p): name for name, p in self.params.items()}
        for mod in model.modules():
            name = by_id.get(id(getattr(mod, "weight", None)))
            if not isinstance(mod, torch.nn.Linear) or name is None or mod is self.head:
                continue

            def on_linear(module: Any, args: tuple[Any, ...], _n: str = name) -> None:
                x = args[0]
                self.linear_inputs[_n] = x.detach().reshape(-1, x.shape[-1]).clone()

            handles.append(mod.register_forward_pre_hook(on_linear))
        try:
            out = self.decoder(input_ids=self.ids, use_cache=False)
        finally:
            for h in handles:
                h.remove()
        # last_hidden_state is after the final norm; an untied head reruns from before it
        self.final_hidden = self._run_layers(self.layer_inputs[-1], len(self.layers) - 1)
        self.ref_logprobs = self._logprobs_from_normed(out.last_hidden_state, None)
        self.ref_probs = self.ref_logprobs.exp()

    @property
    def n_scored(self) -> int:
        return int(self.ref_logprobs.shape[0])

    def _check_replay(self, architecture: str) -> None:
        """The layer-by-layer replay from the embedding output must reproduce the reference."""
        kl = self._mean_kl(self._run_layers(self.layer_inputs[0], 0), 1)[0]
        if not kl < 1e-8:
            raise BadInput(f"the layer-by-layer replay of {architecture} differs from its forward "
                           f"pass (KL {kl:.2e}): its per-tensor sensitivity is not supported",
                           PRESET_FIX)
        scale = getattr(self.decoder.embed_tokens, "embed_scale", None)
        self.embed_scale = None if scale is None else torch.as_tensor(scale).detach().clone()
        emb = self.decoder.embed_tokens
        self.embedding_ok = isinstance(emb, torch.nn.Embedding) and torch.equal(
            self._embed(emb.weight), self.layer_inputs[0])

    def _embed(self, weight: torch.Tensor) -> torch.Tensor:
        hidden = torch.nn.functional.embedding(self.ids, weight)
        if self.embed_scale is not None:
            hidden = hidden * self.embed_scale.to(hidden.dtype)
        return hidden

    def _run_layers(self, hidden: torch.Tensor, start: int, times: int = 1) -> torch.Tensor:
        repeated: dict[int, Any] = {}  # layers share their mask tensors: repeat each once
        for layer, kw in zip(self.layers[start:], self.layer_kwargs[start:]):
            kwargs = {}
            for k, v in kw.items():
                if id(v) not in repeated:
                    repeated[id(v)] = repeat_batch(v, self.batch, times)
                kwargs[k] = repeated[id(v)]
            hidden = first_output(layer(hidden, **kwargs))
        return hidden

    def _logprobs_from_normed(self, normed: torch.Tensor,
                              head_weight: torch.Tensor | None) -> torch.Tensor:
        scored = normed[:, self.first_scored:, :].reshape(-1, normed.shape[-1])
        logits = (self.head(scored) if head_weight is None
                  else torch.nn.functional.linear(scored, head_weight, self.head.bias))
        if self.softcap:  # Gemma 2 (llama.cpp applies it too)
            logits = torch.tanh(logits / self.softcap) * self.softcap
        # float64 from the logits on: float32 normalisation error (~1e-7) would be as large as
        # the KL of a Q8_0 tensor
        return torch.log_softmax(logits.double(), dim=-1)

    def _mean_kl(self, final_hidden: torch.Tensor, times: int,
                 head_weight: torch.Tensor | None = None) -> list[float]:
        """Mean KL(ref || candidate) per candidate for `times` stacked window batches."""
        lq = self._logprobs_from_normed(self.final_norm(final_hidden), head_weight)
        n = self.n_scored
        out = []
        for i in range(times):
            part = lq[i * n:(i + 1) * n]
            kl = (self.ref_probs * (self.ref_logprobs - part)).sum(dim=-1).clamp_min(0.0)
            out.append(float(kl.mean()))
        return out

    def kl(self, name: str, values: Sequence[torch.Tensor]) -> list[float]:
        """Mean KL vs the reference with tensor `name` replaced by each of `values` in turn."""
        return self.kl_many([(name, v) for v in values])

    def kl_many(self, items: Sequence[tuple[str, torch.Tensor]]) -> list[float]:
        """Mean KL vs the reference for each (tensor, replacement) alone."""
        return self.kl_sets([{name: value} for name, value in items])

    def kl_sets(self, items: Sequence[Mapping[str, torch.Tensor]]) -> list[float]:
        """Mean KL vs the reference for each set of replacements (tensor -> value) alone; the
        tensors of one set are in one decoder layer (a fused group), or the set is one global
        tensor (embedding, head)."""
        out: list[float] = [0.0] * len(items)
        by_layer: dict[int, list[int]] = {}
        for i, item in enumerate(items):
            layers = {self.layer_of(name) for name in item}
            if len(layers) != 1:
                raise ValueError(f"replacements {sorted(item)} span layers {layers}")
            layer = layers.pop()
            if layer is None:
                if len(item) != 1:
                    raise ValueError(f"global tensors {sorted(item)} are measured one at a time")
                (name, value), = item.items()
                out[i] = self._kl_global(name, value)
            else:
                by_layer.setdefault(layer, []).append(i)
        for layer, idx in by_layer.items():
            private = copy.deepcopy(self.layers[layer])
            local = dict(private.named_parameters())
            outs = []
            for i in idx:
                saved = {}
                for name, value in items[i].items():
                    p = local[self._where[name][1]]
                    saved[name] = p.data
                    p.data = value.reshape(p.data.shape).to(p.data.dtype)
                outs.append(first_output(private(self.layer_inputs[layer],
                                                 **self.layer_kwargs[layer])))
                for name, data in saved.items():
                    local[self._where[name][1]].data = data
            hidden = self._run_layers(torch.cat(outs), layer + 1, times=len(idx))
            for i, kl in zip(idx, self._mean_kl(hidden, len(idx))):
                out[i] = kl
        return out

    def _kl_global(self, name: str, value: torch.Tensor) -> float:
        """The embedding (and a head tied to it) or an untied head, replaced functionally."""
        param = self.params[name]
        value = value.reshape(param.shape).to(param.dtype)
        head_w = value if self.head is not None and param is self.head.weight else None
        if param is not self.decoder.embed_tokens.weight:
            if head_w is None:
                raise ValueError(f"{name} is in no decoder layer and is neither the embedding "
                                 "nor the head; its sensitivity cannot be measured")
            return self._mean_kl(self.final_hidden, 1, head_w)[0]  # untied head: head alone
        if not self.embedding_ok:
            raise BadInput(f"{type(self.decoder.embed_tokens).__name__} does not reproduce the "
                           "first layer's input from its weight; its sensitivity is not "
                           "supported", PRESET_FIX)
        hidden = self._embed(value)
        return self._mean_kl(self._run_layers(hidden, 0), 1, head_w)[0]

    def local_error(self, name: str, values: Sequence[torch.Tensor]) -> list[float] | None:
        """Mean squared output error ||(W' - W) x||^2 per calibration token of a linear layer,
        for each replacement W'; None for tensors that are not the weight of a linear layer
        (embedding, head) or whose input was not recorded."""
        x = self.linear_inputs.get(name)
        if x is None:
            return None
        w = self.params[name]
        out = []
        for v in values:
            delta = v.reshape(w.shape).to(w.dtype) - w
            out.append(float((x @ delta.T).pow(2).sum() / x.shape[0]))
        return out
