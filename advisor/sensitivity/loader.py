"""A GGUF model in torch float32, and the map from its modules to llama.cpp tensor names.

transformers loads a GGUF dequantized (`from_pretrained(dir, gguf_file=name)`), but on the
embedded SmolLM2-135M that takes ~40 s on 2 cores: gguf-py's GGUFReader parses the 49k-token
vocabulary element by element, twice, and `get_gguf_hf_weights_map` rebuilds gguf-py's tensor name
map ~400 times. For the `llama` architecture this module does the same work directly: the config
from transformers' own GGUF key table (`integrations.ggml.GGUF_CONFIG_MAPPING`), the weights
dequantized by libggml (kernels.ggml_quant, what llama.cpp itself computes with) and q/k rows
un-permuted by transformers' own `LlamaTensorProcessor`, in ~2 s. tests/sensitivity checks it
against `from_pretrained` weight by weight. Other architectures use `from_pretrained`.
"""

from __future__ import annotations

import logging
import mmap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from advisor.errors import BadInput
from advisor.inspect.gguf_header import read_header
from backends.gguf import FAST_ARCHS, UNHANDLED_KEYS, decode, gguf_arch, gguf_config

log = logging.getLogger(__name__)

# The way out when a model's per-tensor sensitivity cannot be measured (loader or replay)
PRESET_FIX = "quantize it with a stock preset (advisor quantize --preset ...)"


@dataclass
class LoadedModel:
    """A causal LM in float32 eval mode and the parameters of its llama.cpp weight tensors."""

    model: Any  # transformers PreTrainedModel
    architecture: str
    params: dict[str, torch.nn.Parameter]
    """llama.cpp name (blk.3.attn_q.weight) -> the parameter holding it (HF row order)."""
    seconds: float


def canonical_params(model: Any, architecture: str, n_layers: int) -> dict[str, torch.nn.Parameter]:
    """llama.cpp tensor name -> parameter, through gguf-py's HF->GGUF name map.

    Tied weights are one parameter (named_parameters lists it once, under the embedding).
    """
    from gguf import get_tensor_name_map

    tmap = get_tensor_name_map(gguf_arch(architecture), n_layers)
    out: dict[str, torch.nn.Parameter] = {}
    for hf_name, p in model.named_parameters():
        found = tmap.get_type_and_name(hf_name, try_suffixes=(".weight", ".bias"))
        if found is None:
            log.debug("no llama.cpp name for %s; left out of the sensitivity", hf_name)
            continue
        out[found[1]] = p
    return out


def _dequantized(buf: Any, data_offset: int, t: Any) -> np.ndarray:
    raw = np.frombuffer(buf, dtype=np.uint8, count=t.nbytes, offset=data_offset + t.offset)
    ne = list(t.ne)
    rows = int(np.prod(ne[1:])) if len(ne) > 1 else 1
    return decode(raw, t.type, rows, ne[0]).reshape(tuple(reversed(ne)))


def _fast_load(path: Path, header: Any, n_layers: int) -> Any:
    """The model built from the GGUF's config, its weights dequantized by libggml."""
    import transformers
    from gguf import get_tensor_name_map
    from transformers.modeling_gguf_pytorch_utils import TENSOR_PROCESSORS

    arch = header.kv["general.architecture"]
    config = gguf_config(header)
    processor = TENSOR_PROCESSORS[arch](config=config.to_dict())
    weights: dict[str, np.ndarray] = {}
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        for t in header.tensors:
            w = _dequantized(buf, header.data_offset, t)
            w = processor.process(weights=w, name=t.name).weights  # q/k rows un-permuted
            weights[t.name] = np.ascontiguousarray(w)
    from transformers.initialization import no_init_weights

    with no_init_weights():  # every weight is assigned below; skip 3 s of random init
        model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32,
                                                              trust_remote_code=False)
    tmap = get_tensor_name_map(gguf_arch(arch), n_layers)
    state = {}
    for hf_name, _ in model.named_parameters(remove_duplicate=False):
        found = tmap.get_type_and_name(hf_name, try_suffixes=(".weight", ".bias"))
        if found is not None and found[1] in weights:
            state[hf_name] = torch.from_numpy(weights[found[1]])
    result = model.load_state_dict(state, strict=False, assign=True)
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    if tied:
        model.tie_weights()
    missing = [k for k in result.missing_keys if not (tied and k.startswith("lm_head."))]
    if missing:
        raise BadInput(f"{path} lacks the tensors of {missing[:4]}", "is the file complete?")
    return model


def _file_config(config: Any, arch: str, kv: dict[str, Any]) -> None:
    """Set what transformers' GGUF key table drops, as llama.cpp reads it from the file.

    - `attention.key_length` is not mapped for qwen3: a head_dim other than the config class's
      default (128) would build the wrong shapes.
    - gemma2's soft-caps are not mapped (the class defaults, 50 and 30, would stand), nor is the
      query scale: llama.cpp scales queries by 1/sqrt(head_dim) (1/sqrt(n_embd/n_head) for the
      46-layer 27B), as backends.gguf.convert checks on conversion.
    """
    key_length = kv.get(f"{arch}.attention.key_length")
    if key_length is not None and getattr(config, "head_dim", None) not in (None, key_length):
        config.head_dim = int(key_length)
    if arch == "gemma2":
        for key in ("attn_logit_softcapping", "final_logit_softcapping"):
            if f"{arch}.{key}" in kv:
                setattr(config, key, float(kv[f"{arch}.{key}"]) or None)
        config.query_pre_attn_scalar = (
            config.hidden_size // config.num_attention_heads
            if config.num_hidden_layers == 46 else config.head_dim)


def _transformers_load(path: Path, arch: str, kv: dict[str, Any]) -> Any:
    """transformers' own GGUF loader, with the hyper-parameters it drops taken from the file."""
    import transformers

    try:
        config = transformers.AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name,
                                                         trust_remote_code=False)
        _file_config(config, arch, kv)
        return transformers.AutoModelForCausalLM.from_pretrained(
            str(path.parent), gguf_file=path.name, config=config, dtype=torch.float32,
            trust_remote_code=False)
    except (RuntimeError, ValueError, KeyError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise BadInput(f"transformers cannot load {path.name} ({arch}) for the sensitivity "
                       f"stage: {first}",
                       f"upgrade transformers, or {PRESET_FIX}") from e


def load_gguf_model(path: str | Path) -> LoadedModel:
    """The GGUF at `path` as a float32 transformers model in eval mode, weights dequantized."""
    path = Path(path)
    t0 = time.perf_counter()
    header = read_header(path)
    arch = str(header.kv.get("general.architecture"))
    n_layers = int(header.kv.get(f"{arch}.block_count", 0))
    fast = arch in FAST_ARCHS and not any(f"{arch}.{k}" in header.kv for k in UNHANDLED_KEYS)
    if fast:
        model = _fast_load(path, header, n_layers)
    else:
        model = _transformers_load(path, arch, header.kv)
    model.eval()
    params = canonical_params(model, arch, n_layers)
    dt = time.perf_counter() - t0
    log.info("loaded %s (%s, %d tensors) in float32 in %.1f s%s", path.name, arch, len(params), dt,
             "" if fast else " via transformers")
    return LoadedModel(model, arch, params, dt)

