"""A GGUF's weights in torch float32, read on demand: the GGUF backend's view of a float model
for the work llama.cpp cannot do in bounded memory or at all.

llama.cpp maps a whole file to run it. Here a model of a FAST_ARCHS architecture (llama layout) is
a transformers skeleton on torch's meta device whose decoder layers are materialized from the
file one at a time (`Sweep`): each read with pread into private memory, dequantized by libggml
(what llama.cpp computes with), its q/k rows un-permuted by transformers' own tensor processor,
run, and dropped. Three callers: the sensitivity stage's sweep (advisor.sensitivity.stream), the
streamed reference log-probs (advisor.measure.quality.streamed) and the streamed importance
matrix (backends.gguf.importance); the whole-model fast loader (advisor.sensitivity.loader)
shares the config and the dequantization.
"""

from __future__ import annotations

import copy
import functools
import os
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from advisor.errors import BadInput
from advisor.inspect.gguf_header import read_header

HEAD_CHUNK = 8192  # vocabulary rows of the head in float32 at a time

# Architectures loaded without transformers' GGUF reader: the weight processing of llama (q/k
# un-permutation) is the only one advisor.sensitivity.loader reproduces and tests.
FAST_ARCHS = frozenset({"llama"})
# Rope variants the fast path does not translate (transformers' loader does not either, except for
# gpt-oss); a file with them goes through from_pretrained so that any error is transformers' own.
UNHANDLED_KEYS = ("rope.scaling.type", "rope.scaling.factor")


def gguf_arch(architecture: str) -> Any:
    from gguf.constants import MODEL_ARCH_NAMES

    for arch, name in MODEL_ARCH_NAMES.items():
        if name == architecture:
            return arch
    raise BadInput(f"gguf-py knows no architecture {architecture!r}", "upgrade the gguf package")


def decode(raw: np.ndarray, gtype: Any, rows: int, n: int) -> np.ndarray:
    """`rows` rows of `n` values stored as GGML type `gtype` (raw bytes) in float32 [rows, n]."""
    from kernels.ggml_quant import dequantize

    name = gtype.name
    if name == "F32":
        return raw.view(np.float32).reshape(rows, n).copy()
    if name == "F16":
        return raw.view(np.float16).astype(np.float32).reshape(rows, n)
    if name == "BF16":
        return (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32).reshape(rows, n)
    return dequantize(raw, int(gtype), (rows, n))


def gguf_config(header: Any) -> Any:
    """The transformers config of a GGUF of a FAST_ARCHS architecture, from transformers' own
    GGUF key table."""
    import transformers
    from transformers.integrations.ggml import GGUF_CONFIG_MAPPING

    kv = header.kv
    arch = kv["general.architecture"]
    cfg: dict[str, Any] = {}
    mapping: dict[str, Any] = GGUF_CONFIG_MAPPING[arch]  # type: ignore[assignment]
    for key, hf_key in mapping.items():
        if f"{arch}.{key}" in kv and hf_key is not None:
            cfg[hf_key] = kv[f"{arch}.{key}"]
    names = {t.name for t in header.tensors}
    cfg["tie_word_embeddings"] = "output.weight" not in names
    if "vocab_size" not in cfg:
        tokens = kv.get("tokenizer.ggml.tokens")
        cfg["vocab_size"] = getattr(tokens, "count", None) or len(tokens)
    for key, hf_key in (("tokenizer.ggml.bos_token_id", "bos_token_id"),
                        ("tokenizer.ggml.eos_token_id", "eos_token_id")):
        if key in kv:
            cfg[hf_key] = kv[key]
    return transformers.AutoConfig.for_model(arch, **cfg)


def first_output(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, tuple) else out


def repeat_batch(value: Any, batch: int, times: int) -> Any:
    """Repeat tensors whose leading dim is the window batch (masks); broadcastable ones stay."""
    if times == 1:
        return value
    if isinstance(value, torch.Tensor):
        if value.dim() > 0 and value.shape[0] == batch and batch > 1:
            return value.repeat(times, *([1] * (value.dim() - 1)))
        return value
    if isinstance(value, tuple):
        return tuple(repeat_batch(v, batch, times) for v in value)
    return value


@functools.lru_cache(maxsize=4)
def _read(path: str, size: int, mtime_ns: int) -> Any:
    return read_header(Path(path))


def header_of(path: Path) -> Any:
    """The GGUF header of `path`, parsed once per file version (a 49k-token vocabulary takes
    ~0.3 s to parse)."""
    st = Path(path).stat()
    return _read(str(path), st.st_size, st.st_mtime_ns)


def streamable(path: Path) -> bool:
    """Whether the GGUF at `path` can be swept layer by layer (its architecture's weight
    processing is the fast loader's)."""
    kv = header_of(path).kv
    arch = str(kv.get("general.architecture"))
    return arch in FAST_ARCHS and not any(f"{arch}.{k}" in kv for k in UNHANDLED_KEYS)


STREAM_FROM = 4e8
"""Parameters from which a streamable model's reference logits (advisor.measure.quality.streamed)
and importance matrix (backends.gguf.importance) come from a sweep instead of llama.cpp, which
maps the whole F16 file: issue 17's memory bound (0.5 x the F16 bytes + 1 GiB) applies from 453M
parameters up, and the 360M-366M rows of BENCHMARKS.md section 2 already peak at 1,679-1,732 MiB
in their measure stage with llama.cpp's reference. Below it llama.cpp computes both, as it serves
the candidates."""


def streams(path: Path) -> bool:
    """Whether the F16 reference at `path` is run streamed (STREAM_FROM)."""
    n_params = sum(int(np.prod([int(x) for x in t.ne])) for t in header_of(path).tensors)
    return n_params >= STREAM_FROM and streamable(path)


class GGUFWeights:
    """A GGUF's tensors on demand, float32 in transformers' row order, read from the file."""

    def __init__(self, path: Path) -> None:
        from gguf import get_tensor_name_map
        from transformers.modeling_gguf_pytorch_utils import TENSOR_PROCESSORS

        self.path = Path(path)
        self.header = header_of(path)
        self.arch = str(self.header.kv["general.architecture"])
        self.n_layers = int(self.header.kv.get(f"{self.arch}.block_count", 0))
        self.config = gguf_config(self.header)
        self.tensors = {t.name: t for t in self.header.tensors}
        self._processor = TENSOR_PROCESSORS[self.arch](config=self.config.to_dict())
        self._tmap = get_tensor_name_map(gguf_arch(self.arch), self.n_layers)
        self._fd = os.open(path, os.O_RDONLY)

    @staticmethod
    def names(path: Path) -> set[str]:
        return {t.name for t in header_of(path).tensors}

    def close(self) -> None:
        os.close(self._fd)

    def gguf_name(self, hf_name: str) -> str | None:
        found = self._tmap.get_type_and_name(hf_name, try_suffixes=(".weight", ".bias"))
        return found[1] if found is not None and found[1] in self.tensors else None

    def _read(self, offset: int, nbytes: int) -> np.ndarray:
        """Bytes of the file read into private memory (os.pread): pages of a mapped file would
        count in the process's RSS until unmapped, a whole float model's worth by the end."""
        out = np.empty(nbytes, dtype=np.uint8)
        view, got = memoryview(out.data), 0
        while got < nbytes:
            n = os.preadv(self._fd, [view[got:]], offset + got)
            if n <= 0:
                raise ValueError(f"the file ends inside a tensor (offset {offset + got})")
            got += n
        return out

    def _layout(self, name: str) -> tuple[Any, int, int, int]:
        """(tensor info, rows, values per row, bytes per row)."""
        t = self.tensors[name]
        ne = [int(x) for x in t.ne]
        rows = int(np.prod(ne[1:])) if len(ne) > 1 else 1
        return t, rows, ne[0], int(t.nbytes) // rows

    def tensor(self, name: str) -> np.ndarray:
        t, rows, n, _ = self._layout(name)
        raw = self._read(self.header.data_offset + t.offset, int(t.nbytes))
        w = decode(raw, t.type, rows, n).reshape(tuple(reversed([int(x) for x in t.ne])))
        return np.ascontiguousarray(self._processor.process(weights=w, name=name).weights)

    def rows(self, name: str, index: np.ndarray) -> np.ndarray:
        """Rows `index` of a 2-D tensor (embedding, head: stored unpermuted), float32."""
        t, _, n, row_bytes = self._layout(name)
        index = np.asarray(index)
        base = self.header.data_offset + t.offset
        if len(index) and np.all(np.diff(index) == 1):  # a range: one read
            raw = self._read(base + int(index[0]) * row_bytes, len(index) * row_bytes)
        else:
            raw = np.concatenate([self._read(base + int(i) * row_bytes, row_bytes)
                                  for i in index]) if len(index) else np.empty(0, np.uint8)
        return decode(raw, t.type, len(index), n)



class _Recorder(torch.nn.Module):
    """Stands in for a decoder layer: records the keyword arguments the decoder passes it."""

    def __init__(self, layer: torch.nn.Module, sink: list[dict[str, Any]]) -> None:
        super().__init__()
        self.attention_type = getattr(layer, "attention_type", None)
        self._sink = sink

    def forward(self, hidden: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        self._sink.append({k: v for k, v in kwargs.items()
                           if k not in ("hidden_states", "past_key_values", "cache")}
                          | {"use_cache": False})
        return hidden



class Sweep:
    """Windows of tokens (and, in the sensitivity sweep, perturbed copies of their hidden states
    stacked along the batch) through the model, one layer at a time."""

    def __init__(self, weights: GGUFWeights, windows: np.ndarray, first_scored: int,
                 device: torch.device) -> None:
        import transformers

        self.w = weights
        self.device = device
        with torch.device("meta"):
            model = transformers.AutoModelForCausalLM.from_config(
                weights.config, dtype=torch.float32, trust_remote_code=False)
        self.decoder = model.get_decoder()
        rot = self.decoder.rotary_emb  # buffers computed at init: rebuilt off the meta device
        self.decoder.rotary_emb = type(rot)(config=weights.config).to(device)
        self.norm = self.materialize(self.decoder.norm, "model.norm.")
        self.decoder.norm = self.norm
        self.ids = torch.as_tensor(np.asarray(windows), dtype=torch.long)
        self.batch, self.n_ctx = self.ids.shape
        self.first_scored = first_scored
        self.tied = "output.weight" not in weights.tensors
        self.head_name = "token_embd.weight" if self.tied else "output.weight"
        self.tokens, inverse = np.unique(self.ids.numpy(), return_inverse=True)
        self._inverse = torch.as_tensor(inverse.reshape(self.ids.shape))
        self.kwargs = self._record_kwargs()

    def materialize(self, module: torch.nn.Module, prefix: str,
                    replaced: Mapping[str, np.ndarray] | None = None) -> torch.nn.Module:
        """A real copy of a meta `module` with its weights from the file (or `replaced`,
        llama.cpp name -> values)."""
        real = copy.deepcopy(module).to_empty(device=self.device)
        state = {}
        for local, _ in module.named_parameters():
            name = self.w.gguf_name(prefix + local)
            if name is None:
                raise BadInput(f"{self.w.path.name} has no tensor for {prefix + local}",
                               "is the file complete? convert or download it again")
            values = (replaced or {}).get(name)
            state[local] = torch.from_numpy(self.w.tensor(name) if values is None else values)
        real.load_state_dict({k: v.to(self.device) for k, v in state.items()}, assign=True)
        return real.eval()

    def embed(self, rows: np.ndarray) -> torch.Tensor:
        """Hidden states of the windows from the embedding rows of their distinct tokens."""
        return torch.from_numpy(rows).to(self.device)[self._inverse.to(self.device)]

    def _record_kwargs(self) -> list[dict[str, Any]]:
        sink: list[dict[str, Any]] = []
        layers = self.decoder.layers
        self.decoder.layers = torch.nn.ModuleList([_Recorder(x, sink) for x in layers])
        try:
            hidden = torch.zeros(self.batch, self.n_ctx, self.w.config.hidden_size,
                                 device=self.device)
            self.decoder(inputs_embeds=hidden, use_cache=False)
        finally:
            self.decoder.layers = layers
        return sink

    def run_layer(self, layer: torch.nn.Module, i: int, hidden: torch.Tensor) -> torch.Tensor:
        times = hidden.shape[0] // self.batch
        kw = {k: repeat_batch(v, self.batch, times) for k, v in self.kwargs[i].items()}
        return first_output(layer(hidden, **kw))

    def logprobs(self, final: torch.Tensor, head: Callable[[int, int], np.ndarray]
                 ) -> torch.Tensor:
        """log-softmax (float64) at the scored positions of `final` (the last layer's output),
        the head's rows `head(a, b)` taken a chunk at a time."""
        normed = self.norm(final)[:, self.first_scored:, :].reshape(-1, final.shape[-1])
        vocab = int(self.w.config.vocab_size)
        logits = torch.empty(normed.shape[0], vocab, dtype=torch.float32, device=self.device)
        for a in range(0, vocab, HEAD_CHUNK):
            b = min(a + HEAD_CHUNK, vocab)
            logits[:, a:b] = normed @ torch.from_numpy(head(a, b)).to(self.device).T
        # float64 from the logits on (float32 normalisation error is the size of a Q8_0 KL), on
        # the CPU: MPS has no float64
        return torch.log_softmax(logits.cpu().double(), dim=-1)


LayerHook = Callable[[int, torch.nn.Module], "Callable[[], None] | None"]
"""Called with a decoder layer's index and its materialized module before it runs; may attach
hooks and return what removes them."""


def run_decoder(s: Sweep, hidden: torch.Tensor, before: LayerHook | None = None
                ) -> torch.Tensor:
    """`hidden` (the embedded windows, stacked batches) through every decoder layer of `s`, each
    materialized from the file, run and dropped; the next layer is read and decoded while this
    one runs (libggml releases the GIL). Peak: two layers in float32 and the activations."""
    w = s.w

    def read(i: int) -> dict[str, np.ndarray]:
        names = (w.gguf_name(f"model.layers.{i}.{n}")
                 for n, _ in s.decoder.layers[i].named_parameters())
        return {g: w.tensor(g) for g in names if g is not None}

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch") as ahead:
        upcoming = ahead.submit(read, 0)
        for i in range(w.n_layers):
            values = upcoming.result()
            if i + 1 < w.n_layers:
                upcoming = ahead.submit(read, i + 1)
            layer = s.materialize(s.decoder.layers[i], f"model.layers.{i}.", values)
            del values
            remove = before(i, layer) if before is not None else None
            hidden = s.run_layer(layer, i, hidden)
            if remove is not None:
                remove()
            del layer
    return hidden
