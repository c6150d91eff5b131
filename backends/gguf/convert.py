"""Convert a Hugging Face safetensors directory of the llama family to an F16 (or BF16/F32) GGUF.

This follows llama.cpp's convert_hf_to_gguf.py (TextModel, LlamaModel, Qwen2Model, Qwen3Model,
GemmaModel, Gemma2Model) for metadata, tensor names (gguf.get_tensor_name_map), storage types and
the q/k permutation; the tokenizer is written by backends.gguf.vocab.

Memory stays at about one tensor: every tensor's info is declared from the safetensors headers,
then each tensor is read alone (safe_open), converted, appended to the file and dropped. The file
is written under a temporary name and renamed when complete, so a crash leaves no half GGUF.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from advisor.errors import BadInput
from advisor.inspect.hf_source import weight_files
from advisor.modelspec import ModelSpec, SourceFormat
from backends.gguf.vocab import add_vocab

logger = logging.getLogger(__name__)

OUT_TYPES = ("F16", "BF16", "F32")


@dataclass(frozen=True)
class ArchRules:
    """What one HF architecture needs beyond the common conversion."""

    arch: str
    """gguf MODEL_ARCH name (llama.cpp architecture)."""
    permute_qk: bool = False
    """LlamaModel.undo_permute: llama.cpp's llama graph uses interleaved (GPT-J) rotary pairs,
    HF checkpoints rotate halves, so q/k rows are reordered. NEOX-rope archs keep HF's layout."""
    norm_shift: float = 0.0
    """GemmaRMSNorm multiplies by (1 + w); llama.cpp multiplies by w, so w + 1 is stored."""
    skip: tuple[str, ...] = ()
    """HF tensors not written (Gemma's lm_head: llama.cpp always ties it to token_embd)."""


# HF architecture class -> rules; names as in advisor.inspect.hf_source.HF_ARCHITECTURES.
ARCHITECTURES = {
    "LlamaForCausalLM": ArchRules("llama", permute_qk=True),
    "MistralForCausalLM": ArchRules("llama", permute_qk=True),  # registered on LlamaModel
    "Qwen2ForCausalLM": ArchRules("qwen2"),
    "Qwen3ForCausalLM": ArchRules("qwen3"),
    "GemmaForCausalLM": ArchRules("gemma", norm_shift=1.0, skip=("lm_head.weight",)),
    "Gemma2ForCausalLM": ArchRules("gemma2", norm_shift=1.0, skip=("lm_head.weight",)),
}
_ACTIVATIONS = {"llama": ("silu", "swish"), "qwen2": ("silu", "swish"), "qwen3": ("silu", "swish"),
                "gemma": ("gelu", "gelu_pytorch_tanh"), "gemma2": ("gelu", "gelu_pytorch_tanh")}
# HF tensors that are buffers, not weights (convert_hf_to_gguf.py filter_tensors drops them).
_IGNORED = re.compile(r"rotary_emb\.inv_freq$")


def permute(w: Any, n_head: int, n_head_kv: int) -> Any:
    """convert_hf_to_gguf.py LlamaModel.permute: HF rotate-half rows -> interleaved pairs."""
    if n_head_kv != n_head:
        n_head = n_head_kv
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def _config(spec: ModelSpec) -> dict[str, Any]:
    path = Path(spec.path) / "config.json"
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise BadInput(f"cannot read {path} ({type(e).__name__})", "restore the model's config.json"
                       ) from None
    # TextModel.__init__: multimodal configs keep the language model under text_config
    return {**cfg, **cfg["text_config"]} if isinstance(cfg.get("text_config"), dict) else cfg


def _rules(spec: ModelSpec, cfg: dict[str, Any]) -> ArchRules:
    hf_arch = spec.extra.get("hf_architecture") or next(iter(cfg.get("architectures") or []), None)
    if hf_arch not in ARCHITECTURES:
        raise BadInput(f"GGUF conversion of architecture {hf_arch!r} is not supported",
                       f"supported: {', '.join(sorted(ARCHITECTURES))}")
    rules = ARCHITECTURES[hf_arch]
    if spec.source_quantization is not None:
        raise BadInput(f"{spec.path} stores {spec.source_quantization} weights; conversion reads "
                       "float checkpoints", "convert the unquantized checkpoint")
    act = cfg.get("hidden_activation") or cfg.get("hidden_act") or "silu"
    if act not in _ACTIVATIONS[rules.arch]:
        raise BadInput(f"{hf_arch} with activation {act!r}: llama.cpp's {rules.arch} graph uses "
                       f"{_ACTIVATIONS[rules.arch][0]}", "this checkpoint cannot be converted")
    if rules.arch == "gemma2":
        # llama.cpp models/gemma2.cpp scales queries by 1/sqrt(head_dim) (1/sqrt(n_embd/n_head)
        # for the 46-layer 27B); HF by query_pre_attn_scalar**-0.5. They must agree.
        want = spec.hidden_size // spec.n_heads if spec.n_layers == 46 else spec.head_dim
        if cfg.get("query_pre_attn_scalar", want) != want:
            raise BadInput(f"Gemma2 query_pre_attn_scalar={cfg['query_pre_attn_scalar']} differs "
                           f"from the {want} llama.cpp uses", "this checkpoint cannot be converted")
    return rules


def _rope(cfg: dict[str, Any]) -> dict[str, Any]:
    # TextModel.__init__: transformers 5 writes rope_parameters, older configs rope_theta and
    # rope_scaling; mirror them into one dict.
    rope = dict(cfg.get("rope_parameters") or cfg.get("rope_scaling") or {})
    rope = dict(rope.get("full_attention", rope))
    if "rope_theta" not in rope and cfg.get("rope_theta") is not None:
        rope["rope_theta"] = cfg["rope_theta"]
    rope.setdefault("rope_type", rope.get("type"))
    return rope


def _llama3_rope_factors(cfg: dict[str, Any], rope: dict[str, Any], head_dim: int) -> np.ndarray:
    """convert_hf_to_gguf.py LlamaModel.generate_extra_tensors: the rope_freqs tensor."""
    base = float(rope.get("rope_theta", 10000.0))
    freqs = 1.0 / (base ** (np.arange(0, head_dim, 2, dtype=np.float32) / head_dim))
    factor = float(rope.get("factor", 8.0))
    low, high = float(rope.get("low_freq_factor", 1.0)), float(rope.get("high_freq_factor", 4.0))
    old_ctx = float(rope.get("original_max_position_embeddings",
                             cfg.get("original_max_position_embeddings", 8192)))
    out = []
    for f in freqs:
        wavelen = 2 * math.pi / f
        if wavelen < old_ctx / high:
            out.append(1.0)
        elif wavelen > old_ctx / low:
            out.append(factor)
        else:
            smooth = (old_ctx / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.asarray(out, dtype=np.float32)


def _add_hparams(w: Any, spec: ModelSpec, cfg: dict[str, Any], rules: ArchRules, ftype: int,
                 rope: dict[str, Any]) -> None:
    import gguf

    # TextModel.set_gguf_parameters
    w.add_block_count(spec.n_layers)
    w.add_context_length(spec.context_length)
    w.add_embedding_length(spec.hidden_size)
    w.add_feed_forward_length(spec.intermediate_size)
    w.add_head_count(spec.n_heads)
    w.add_head_count_kv(spec.n_kv_heads)
    if rope.get("rope_theta") is not None:
        w.add_rope_freq_base(float(rope["rope_theta"]))
    w.add_layer_norm_rms_eps(float(cfg.get("rms_norm_eps", 1e-6)))
    if cfg.get("head_dim") is not None:
        w.add_key_length(spec.head_dim)
        w.add_value_length(spec.head_dim)
    factor = rope.get("factor")
    if rope.get("rope_type") == "linear" and factor is not None:
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(float(factor))
    elif rope.get("rope_type") == "yarn" and factor is not None:
        w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        w.add_rope_scaling_factor(float(factor))
        w.add_rope_scaling_orig_ctx_len(int(rope["original_max_position_embeddings"]))
    elif rope.get("rope_type") not in (None, "default", "llama3"):
        raise BadInput(f"rope scaling {rope.get('rope_type')!r} is not supported by the converter",
                       "supported: default, linear, yarn, llama3")
    w.add_file_type(ftype)
    if rules.arch == "llama":  # LlamaModel.set_gguf_parameters
        w.add_vocab_size(spec.vocab_size)
        w.add_rope_dimension_count(spec.head_dim)
    if rules.arch == "gemma2":  # Gemma2Model.set_gguf_parameters
        w.add_attn_logit_softcapping(float(cfg.get("attn_logit_softcapping") or 0.0))
        w.add_final_logit_softcapping(float(cfg.get("final_logit_softcapping") or 0.0))
        w.add_sliding_window(int(cfg.get("sliding_window") or 4096))


@dataclass(frozen=True)
class _Planned:
    """One output tensor: where it comes from and how it is stored."""

    gguf_name: str
    shape: tuple[int, ...]
    qtype: Any  # gguf.GGMLQuantizationType
    load: Callable[[], np.ndarray]


def _store(arr: np.ndarray, qtype: Any) -> np.ndarray:
    """Float32 array -> the bytes GGUFWriter writes for `qtype`."""
    import gguf

    if qtype == gguf.GGMLQuantizationType.F32:
        return arr.astype(np.float32, copy=False)
    if qtype == gguf.GGMLQuantizationType.F16:
        return arr.astype(np.float16)
    return gguf.quants.quantize(arr, qtype)  # BF16: round-to-nearest-even, as the converter


def _plan(spec: ModelSpec, rules: ArchRules, out_qtype: Any) -> list[_Planned]:
    import gguf
    import torch
    from safetensors import safe_open

    d = Path(spec.path)
    where: dict[str, Path] = {}
    for f in weight_files(d):
        with safe_open(str(f), framework="pt") as st:
            where.update({k: f for k in st.keys()})
    planned: list[_Planned] = []
    for t in spec.tensors:
        if t.name in rules.skip or _IGNORED.search(t.name):
            continue
        if t.name not in where:  # e.g. Mistral's consolidated.safetensors beside model-*.
            logger.info("skipping %s: not in the model's weight files", t.name)
            continue
        if any(p.gguf_name == t.canonical for p in planned):
            raise BadInput(f"{d}: two tensors map to {t.canonical!r}",
                           "the directory holds two copies of the weights; keep one")
        if t.canonical == t.name:  # ModelSpec keeps the HF name when the tensor map has none
            raise BadInput(f"{d}: tensor {t.name!r} has no llama.cpp name for {rules.arch}",
                           "this checkpoint holds tensors the converter does not know")
        n_dims = len(t.shape)
        # ModelBase.prepare_tensors: 1-D tensors and norms stay F32
        f32 = n_dims <= 1 or t.canonical.endswith("_norm.weight")
        qtype = gguf.GGMLQuantizationType.F32 if f32 else out_qtype

        def load(name: str = t.name, canonical: str = t.canonical) -> np.ndarray:
            with safe_open(str(where[name]), framework="pt") as st:
                x = st.get_tensor(name).to(torch.float32)
            if rules.permute_qk and canonical.endswith(("attn_q.weight", "attn_q.bias")):
                x = permute(x, spec.n_heads, spec.n_heads)
            elif rules.permute_qk and canonical.endswith(("attn_k.weight", "attn_k.bias")):
                x = permute(x, spec.n_heads, spec.n_kv_heads)
            if rules.norm_shift and name.endswith("norm.weight"):
                x = x + rules.norm_shift
            return x.numpy()

        planned.append(_Planned(t.canonical, t.shape, qtype, load))
    return planned


def output_path(spec: ModelSpec, dst_dir: Path, out_type: str = "F16") -> Path:
    """Where convert_hf_to_gguf writes: `dst_dir/<name>-<out_type>.gguf`."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(spec.name).name).strip("-.") or "model"
    return Path(dst_dir) / f"{name}-{out_type}.gguf"


def cached_f16(spec: ModelSpec) -> Path:
    """The F16 GGUF of the HF directory `spec`, converted once into the cache
    (`<cache>/references/hf-<content identity>/`) and reused: it is both the F16 reference of
    every quality measurement and the file every GGUF quantization of that directory starts
    from (converting per candidate cost `recommend` one conversion per candidate)."""
    from advisor.artifact.cache import cache_root, file_identity

    dst_dir = cache_root() / "references" / f"hf-{file_identity(spec.path)[:16]}"
    done = output_path(spec, dst_dir)
    return done if done.is_file() else convert_hf_to_gguf(spec, dst_dir)


def convert_hf_to_gguf(spec: ModelSpec, dst_dir: Path, out_type: str = "F16") -> Path:
    """Write the GGUF of the HF directory `spec` describes; return its path.

    2-D weights are stored as `out_type` (F16, BF16 or F32), 1-D tensors and norms as F32.
    Raises BadInput for an unsupported architecture, tokenizer or source.
    """
    import gguf

    out_type = out_type.upper()
    if out_type not in OUT_TYPES:
        raise BadInput(f"GGUF conversion out_type {out_type!r} is not supported",
                       f"choose one of {', '.join(OUT_TYPES)}; quantize the F16 file afterwards")
    if spec.format is not SourceFormat.HF:
        raise BadInput(f"{spec.path} is already a GGUF file", "pass a Hugging Face directory")
    cfg = _config(spec)
    rules = _rules(spec, cfg)
    ftype = {"F16": gguf.LlamaFileType.MOSTLY_F16, "BF16": gguf.LlamaFileType.MOSTLY_BF16,
             "F32": gguf.LlamaFileType.ALL_F32}[out_type]
    qtype = gguf.GGMLQuantizationType[out_type]
    rope = _rope(cfg)
    planned = _plan(spec, rules, qtype)
    if rules.arch == "llama" and str(rope.get("rope_type", "")).lower() == "llama3":
        factors = _llama3_rope_factors(cfg, rope, spec.head_dim)
        planned.append(_Planned(gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FREQS] + ".weight",
                                factors.shape, gguf.GGMLQuantizationType.F32, lambda: factors))

    dst = output_path(spec, dst_dir, out_type)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    name = dst.name.removesuffix(f"-{out_type}.gguf")
    w = gguf.GGUFWriter(path=None, arch=rules.arch)
    try:
        w.add_type(gguf.GGUFType.MODEL)
        w.add_name(name)
        _add_hparams(w, spec, cfg, rules, ftype, rope)
        add_vocab(w, Path(spec.path), spec.vocab_size, rules.arch)
        w.add_quantization_version(gguf.GGML_QUANT_VERSION)
        for p in planned:
            row_bytes = 4 if p.qtype == gguf.GGMLQuantizationType.F32 else 2
            w.add_tensor_info(p.gguf_name, p.shape, np.dtype(np.float32),
                              math.prod(p.shape) * row_bytes, raw_dtype=p.qtype)
        w.write_header_to_file(path=tmp)
        w.write_kv_data_to_file()
        w.write_ti_data_to_file()
        for p in planned:
            w.write_tensor_data(_store(p.load(), p.qtype))
        w.close()
        os.replace(tmp, dst)
    except BaseException:
        w.close()
        tmp.unlink(missing_ok=True)
        raise
    logger.info("wrote %s (%d tensors, %s)", dst, len(planned), out_type)
    return dst
