"""Layer-streamed processing of a Hugging Face float model: one decoder layer in memory at a time.

The model is built on the meta device (accelerate's `init_empty_weights`: parameters without
storage, buffers such as the rotary tables real); the embedding is loaded from the safetensors
files to turn calibration tokens into the first layer's inputs (caught by a pre-hook that stops
the forward, llm-compressor's "Catcher"); then each decoder layer in turn is loaded in float32,
handed to the caller (who calibrates, quantizes and writes it), run on the current activations
to give the next layer's inputs, and sent back to the meta device. Peak memory is one float32
layer plus the activations of the calibration windows, whatever the model's depth.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from advisor.inspect.untrusted import refuse_custom_code

LayerFn = Callable[[int, torch.nn.Module, "Activations"], None]


@dataclass
class Activations:
    """The current layer's inputs (float32 [windows, tokens, hidden]) and the keyword arguments
    the model passes every decoder layer (mask, rotary position embeddings, ...)."""

    hidden: torch.Tensor
    kwargs: dict[str, Any] = field(default_factory=dict)

    def run(self, layer: torch.nn.Module) -> torch.Tensor:
        """The layer's outputs on these inputs, one window at a time (bounded memory)."""
        outs = []
        with torch.no_grad():
            for w in range(self.hidden.shape[0]):
                out = layer(self.hidden[w:w + 1], **self.kwargs)
                outs.append(out[0] if isinstance(out, tuple) else out)
        return torch.cat(outs, dim=0)


class _Stop(Exception):
    """Raised by the catcher once the first layer's inputs are known."""


def weight_index(model_dir: Path) -> dict[str, Path]:
    """Tensor name -> safetensors file of a model directory."""
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        wm = json.loads(index.read_text())["weight_map"]
        return {k: model_dir / v for k, v in wm.items()}
    from safetensors import safe_open

    out: dict[str, Path] = {}
    for f in sorted(model_dir.glob("*.safetensors")):
        with safe_open(str(f), "pt") as sf:
            out.update({k: f for k in sf.keys()})
    return out


def read_tensors(index: dict[str, Path], names: list[str]) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    by_file: dict[Path, list[str]] = {}
    for n in names:
        by_file.setdefault(index[n], []).append(n)
    out = {}
    for f, ns in by_file.items():
        with safe_open(str(f), "pt") as sf:
            out.update({n: sf.get_tensor(n) for n in ns})
    return out


def empty_model(model_dir: Path) -> torch.nn.Module:
    import transformers
    from accelerate import init_empty_weights

    refuse_custom_code(model_dir)
    cfg = transformers.AutoConfig.from_pretrained(str(model_dir), trust_remote_code=False)
    with init_empty_weights():
        model = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.float32,
                                                              trust_remote_code=False)
    model.eval()
    return model


def _materialize(model: torch.nn.Module, prefix: str, index: dict[str, Path]) -> None:
    """Load the float32 weights of submodule `prefix` (its tensors named `prefix.*`)."""
    from accelerate.utils import set_module_tensor_to_device

    names = [n for n, _ in model.named_parameters() if n.startswith(prefix + ".")]
    found = read_tensors(index, [n for n in names if n in index])
    for n in names:
        if n not in found:
            raise KeyError(f"{n} is missing from the checkpoint")
        set_module_tensor_to_device(model, n, "cpu", value=found[n].float())


def _release(module: torch.nn.Module) -> None:
    module.to_empty(device="meta")


def decoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    layers = model.get_submodule("model.layers")
    assert isinstance(layers, torch.nn.ModuleList)
    return layers


def first_inputs(model: torch.nn.Module, index: dict[str, Path],
                 tokens: torch.Tensor) -> Activations:
    """The first decoder layer's inputs for token windows [n, T]."""
    embed_name = next(n for n, _ in model.named_parameters() if "embed_tokens" in n)
    embed_prefix = embed_name.rsplit(".", 1)[0]
    _materialize(model, embed_prefix, index)
    layer0 = decoder_layers(model)[0]
    caught: dict[str, Any] = {}

    def catcher(_: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        caught["hidden"] = args[0] if args else kwargs.pop("hidden_states")
        caught["kwargs"] = {k: v for k, v in kwargs.items() if k != "hidden_states"}
        raise _Stop

    handle = layer0.register_forward_pre_hook(catcher, with_kwargs=True)
    hidden = []
    try:
        with torch.no_grad():
            for w in range(tokens.shape[0]):  # one window at a time: the mask is per batch shape
                try:
                    model(input_ids=tokens[w:w + 1], use_cache=False)
                except _Stop:
                    hidden.append(caught["hidden"].float())
    finally:
        handle.remove()
        _release(model.get_submodule(embed_prefix))
    kwargs = caught["kwargs"]
    kwargs["use_cache"] = False
    kwargs.pop("past_key_values", None)
    return Activations(torch.cat(hidden, dim=0), kwargs)


def stream_layers(model_dir: Path, tokens: torch.Tensor | None, fn: LayerFn,
                  on_progress: Callable[[int, int], None] | None = None,
                  propagate: bool = True) -> None:
    """Call `fn(i, layer, acts)` for every decoder layer, one float32 layer in memory at a time.

    `tokens` None: no calibration (acts is empty). `propagate`: after `fn` (which may have
    replaced the layer's weights by their quantized values), the layer is run on the current
    inputs to give the next layer's; `fn` may instead set `acts.hidden` itself.
    """
    model = empty_model(model_dir)
    index = weight_index(model_dir)
    acts = first_inputs(model, index, tokens) if tokens is not None else \
        Activations(torch.empty(0))
    layers = decoder_layers(model)
    for i, layer in enumerate(layers):
        _materialize(model, f"model.layers.{i}", index)
        fn(i, layer, acts)
        if tokens is not None and propagate:
            acts.hidden = acts.run(layer)
        _release(layer)
        if on_progress:
            on_progress(i + 1, len(layers))


@dataclass
class PeakMemory:
    """Resident memory sampled while a block runs: peak and the level it started from."""

    start: int = 0
    peak: int = 0

    @property
    def added(self) -> int:
        return max(self.peak - self.start, 0)

    def figure(self, what: str) -> dict[str, Any]:
        """The measured peak as a plan's `peak_memory` (a Figure, plus `added`: above the
        start)."""
        from advisor.figures import BYTES, Figure, Origin

        return {**Figure(self.peak, BYTES, Origin.MEASURED, what).to_dict(), "added": self.added}


@contextmanager
def track_peak_rss(interval: float = 0.02) -> Iterator[PeakMemory]:
    """Sample this process's anonymous resident memory (RSS less file-backed shared pages, so
    memory-mapped safetensors do not count) in a thread; the peak is measured, not modelled
    (torch's CPU allocator bypasses Python's tracemalloc)."""
    import psutil

    proc = psutil.Process()

    def anon() -> int:
        info = proc.memory_info()
        return int(info.rss - getattr(info, "shared", 0))

    mem = PeakMemory(start=anon())
    mem.peak = mem.start
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            mem.peak = max(mem.peak, anon())
            time.sleep(interval)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        yield mem
    finally:
        done.set()
        t.join()
        mem.peak = max(mem.peak, anon())
