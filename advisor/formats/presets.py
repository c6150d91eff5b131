"""llama.cpp quantization presets (ftypes) as per-tensor plans: which GGML type each tensor gets.

A port of src/llama-quant.cpp of the llama.cpp that llama-cpp-python 0.3.36 vendors (llama.cpp
commit 0c1e570): `llama_model_quantize_impl` (tensor order, counters), `tensor_allows_quantization`,
`llama_tensor_get_type` and the mixture rules of `llama_tensor_get_type_impl`, which live in
`_mixture.py`. Line references below are to that file.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from types import MappingProxyType

from advisor.errors import BadInput
from advisor.formats import _mixture
from advisor.formats._mixture import Category, QuantState
from advisor.formats.ggml import fallback, ggml_type
from advisor.modelspec import ModelSpec, SourceFormat, TensorInfo


@dataclass(frozen=True)
class Preset:
    """One llama.cpp file type: `llama-quantize model.gguf out.gguf <name>`."""

    name: str
    ftype: int
    """LLAMA_FTYPE_MOSTLY_<name> (LLAMA_FTYPE_ALL_F32 for F32) in include/llama.h."""
    default_type: str
    """llama_ftype_get_default_type(): the type of tensors no rule singles out."""


# llama.h enum llama_ftype, and llama_ftype_get_default_type() in llama-quant.cpp (l. 881-926).
# LLAMA_FTYPE_MOSTLY_NVFP4 (39) is left out: this llama.cpp has no default type for it and refuses.
_PRESETS = MappingProxyType(
    {
        p.name: p
        for p in (
            Preset("F32", 0, "F32"),
            Preset("F16", 1, "F16"),
            Preset("Q4_0", 2, "Q4_0"),
            Preset("Q4_1", 3, "Q4_1"),
            Preset("Q8_0", 7, "Q8_0"),
            Preset("Q5_0", 8, "Q5_0"),
            Preset("Q5_1", 9, "Q5_1"),
            Preset("Q2_K", 10, "Q2_K"),
            Preset("Q3_K_S", 11, "Q3_K"),
            Preset("Q3_K_M", 12, "Q3_K"),
            Preset("Q3_K_L", 13, "Q3_K"),
            Preset("Q4_K_S", 14, "Q4_K"),
            Preset("Q4_K_M", 15, "Q4_K"),
            Preset("Q5_K_S", 16, "Q5_K"),
            Preset("Q5_K_M", 17, "Q5_K"),
            Preset("Q6_K", 18, "Q6_K"),
            Preset("IQ2_XXS", 19, "IQ2_XXS"),
            Preset("IQ2_XS", 20, "IQ2_XS"),
            Preset("Q2_K_S", 21, "Q2_K"),
            Preset("IQ3_XS", 22, "IQ3_S"),
            Preset("IQ3_XXS", 23, "IQ3_XXS"),
            Preset("IQ1_S", 24, "IQ1_S"),
            Preset("IQ4_NL", 25, "IQ4_NL"),
            Preset("IQ3_S", 26, "IQ3_S"),
            Preset("IQ3_M", 27, "IQ3_S"),
            Preset("IQ2_S", 28, "IQ2_XS"),
            Preset("IQ2_M", 29, "IQ2_S"),
            Preset("IQ4_XS", 30, "IQ4_XS"),
            Preset("IQ1_M", 31, "IQ1_M"),
            Preset("BF16", 32, "BF16"),
            Preset("TQ1_0", 36, "TQ1_0"),
            Preset("TQ2_0", 37, "TQ2_0"),
            Preset("MXFP4_MOE", 38, "MXFP4"),
            Preset("Q1_0", 40, "Q1_0"),
            Preset("Q2_0", 41, "Q2_0"),
        )
    }
)


def preset_names() -> list[str]:
    """Every preset name, in llama.h ftype order."""
    return list(_PRESETS)


def is_preset(name: str) -> bool:
    return name.upper() in _PRESETS


def preset(name: str) -> Preset:
    p = _PRESETS.get(name.upper())
    if p is None:
        raise BadInput(f"unknown llama.cpp preset {name!r}", f"use one of {', '.join(_PRESETS)}")
    return p


def _layer_of(name: str) -> int:
    """sscanf(name, "blk.%d.") as in weight_name_comparer (llama-model-loader.h); -1 if none."""
    m = re.match(r"blk\.(-?\d+)\.", name)
    return int(m.group(1)) if m else -1


def _n_dims(shape: Sequence[int]) -> int:
    """ggml_n_dims(): trailing ne == 1 do not count (ne is the PyTorch shape reversed)."""
    ne = list(reversed(shape))
    for i in range(len(ne) - 1, 0, -1):
        if ne[i] > 1:
            return i + 1
    return 1


def _allows_quantization(name: str, n_dims: int, arch: str, quantize_output: bool) -> bool:
    """tensor_allows_quantization() (l. 287-385), params->only_copy being false."""
    if n_dims < 2:
        return False
    if not name.endswith("weight") or "_norm.weight" in name:
        return False
    if not quantize_output and name == "output.weight":
        return False
    never = (
        "ffn_gate_inp.weight", "ffn_gate_tid2eid.weight", "altup", "laurel",
        "per_layer_model_proj", "ssm_conv1d", "shortconv.conv.weight",
        "indexer.k_proj.weight", "indexer.q_proj.weight",
        "time_mix_first.weight", "time_mix_w0.weight", "time_mix_w1.weight",
        "time_mix_w2.weight", "time_mix_v0.weight", "time_mix_v1.weight", "time_mix_v2.weight",
        "time_mix_a0.weight", "time_mix_a1.weight", "time_mix_a2.weight", "time_mix_g1.weight",
        "time_mix_g2.weight", "time_mix_decay_w1.weight", "time_mix_decay_w2.weight",
        "time_mix_lerp_fused.weight", "attn_rel_b.weight",
        ".position_embd", "sam.pos_embd", "sam.neck.", "sam.net_", ".rel_pos", ".patch_embd",
        ".patch_merger", "a.rvq.codebook", "mm.a.code_embd",
    )
    if any(s in name for s in never):
        return False
    if name in ("position_embd.weight", "token_types.weight"):  # LLM_TN POS_EMBD, TOKEN_TYPES
        return False
    if arch == "glm5-next":
        glm = (
            "hc_", "indexer.attn_q_b", "indexer.attn_k", "indexer.proj",
            "indexer_compressor_gate", "indexer_compressor_ape", "ssm_f_a.weight",
            "ssm_f_b.weight", "ssm_g_a.weight", "ssm_g_b.weight", "ssm_beta.weight",
            "attn_kv_a_mqa.weight", "attn_k_b.weight", "attn_v_b.weight",
        )
        if any(s in name for s in glm):
            return False
    return True


def _kept_type(t: TensorInfo, spec: ModelSpec) -> str:
    """The type a tensor that is not quantized keeps: its type in the GGUF being quantized.

    For an HF source that is what convert_hf_to_gguf.py writes (conversion/base.py, l. 1083-1125):
    F32 for 1-D tensors, norms, non-`.weight` tensors and the small always-F32 tables; otherwise
    the 16-bit type of `--outtype auto`.
    """
    if spec.format is SourceFormat.GGUF:
        return t.dtype
    name = t.canonical
    f32_parts = ("ffn_gate_inp", "position_embd", "token_types", "ssm_conv1d", "shortconv.conv",
                 "time_mix_first", "time_mix_w1", "time_mix_w2", "time_mix_decay_w",
                 "time_mix_lerp_fused", "altup_correct_coef", "altup_predict_coef")
    if (len(t.shape) <= 1 or name.endswith("_norm.weight") or not name.endswith(".weight")
            or any(p in name for p in f32_parts)):
        return "F32"
    return t.dtype if t.dtype in ("F16", "BF16") else "F16"


def _n_expert(spec: ModelSpec) -> int:
    """hparams.n_expert: from the spec's extra, else from the leading dim of a stacked expert."""
    if "n_expert" in spec.extra:
        return int(spec.extra["n_expert"])
    for t in spec.tensors:
        if "_exps." in t.canonical and len(t.shape) == 3:
            return t.shape[0]
    return 0


def preset_plan(
    spec: ModelSpec,
    preset_name: str,
    *,
    imatrix: bool = False,
    pure: bool = False,
    output_tensor_type: str | None = None,
    token_embedding_type: str | None = None,
    quantize_output_tensor: bool = True,
    overrides: Sequence[tuple[str, str]] = (),
) -> dict[str, str]:
    """Canonical tensor name -> the GGML type llama.cpp's quantizer writes for `preset_name`.

    The keywords mirror llama_model_quantize_params (and llama-quantize's --imatrix, --pure,
    --output-tensor-type, --token-embedding-type, --leave-output-tensor, --tensor-type
    PATTERN=TYPE; the first override whose regex matches a tensor wins). Unknown preset or type
    names raise BadInput listing the known ones.
    """
    plan, _ = _plan(spec, preset(preset_name), imatrix, pure, output_tensor_type,
                    token_embedding_type, quantize_output_tensor, overrides)
    return plan


def requires_imatrix(spec: ModelSpec, preset_name: str, **opts: object) -> bool:
    """Whether llama.cpp refuses to write this preset without an importance matrix.

    tensor_requires_imatrix() and the check of the preliminary loop (l. 856-875, 1108-1145): a
    quantizable tensor other than token_embd/output whose target is IQ1_*, IQ2_* or IQ3_XXS, or
    Q2_K inside a Q2_K_S file. `opts` are preset_plan's keywords.
    """
    p = preset(preset_name)
    plan, allowed = _plan(spec, p, **opts)  # type: ignore[arg-type]
    exempt = ("token_embd.weight", "per_layer_token_embd.weight", "output.weight")
    return any(
        ggml_type(tt).requires_imatrix or (tt == "Q2_K" and p.name == "Q2_K_S")
        for name, tt in plan.items()
        if name in allowed and name not in exempt
    )


def _plan(
    spec: ModelSpec,
    p: Preset,
    imatrix: bool = False,
    pure: bool = False,
    output_tensor_type: str | None = None,
    token_embedding_type: str | None = None,
    quantize_output_tensor: bool = True,
    overrides: Sequence[tuple[str, str]] = (),
) -> tuple[dict[str, str], set[str]]:
    """(plan, names of the tensors llama.cpp allows to quantize)."""
    default = ggml_type(p.default_type)
    ovr = [(re.compile(pat), ggml_type(tt).name) for pat, tt in overrides]
    out_type = ggml_type(output_tensor_type).name if output_tensor_type else None
    emb_type = ggml_type(token_embedding_type).name if token_embedding_type else None

    # weights_map is a std::map ordered by weight_name_comparer: layer number, then name.
    tensors = sorted(spec.tensors, key=lambda t: (_layer_of(t.canonical), t.canonical))
    names = [t.canonical for t in tensors]
    qs = QuantState(
        ftype=p.name,
        arch=spec.architecture,
        n_gqa=spec.n_heads // spec.n_kv_heads if spec.n_kv_heads else 0,
        n_expert=_n_expert(spec),
        is_70b=_mixture.is_70b(spec),
        has_imatrix=imatrix,
        # init_quantize_state_counters() (l. 929-943)
        n_attention_wv=sum(_mixture.is_attn_v(_mixture.category(n)) for n in names),
        n_layer=spec.n_layers,
        has_tied_embeddings="output.weight" not in names,
    )

    plan: dict[str, str] = {}
    allowed: set[str] = set()
    for t in tensors:
        name = t.canonical
        if not _allows_quantization(name, _n_dims(t.shape), spec.architecture,
                                    quantize_output_tensor):
            plan[name] = _kept_type(t, spec)
            continue
        allowed.add(name)
        cat = _mixture.category(name)
        # llama_tensor_get_type() (l. 717-772)
        if emb_type is not None and cat is Category.TOKEN_EMBD:
            # per_layer_token_embd may still be named by a --tensor-type pattern
            named = name == "per_layer_token_embd.weight" and any(r.search(name) for r, _ in ovr)
            if not named:
                plan[name] = emb_type
                continue
        if out_type is not None and cat is Category.OUTPUT:
            plan[name] = out_type
            continue
        new_type = default.name
        if default.is_quantized:
            manual = next((tt for r, tt in ovr if r.search(name)), None)
            if manual is not None:
                new_type = manual
            elif not pure:
                new_type = _mixture.tensor_type(qs, new_type, name, t.row_size, t.shape, cat,
                                                out_type, emb_type)
            # incompatible shapes fall back to a compatible type (l. 769)
            new_type = fallback(new_type, t.row_size)
        plan[name] = new_type
    return {t.canonical: plan[t.canonical] for t in spec.tensors}, allowed
