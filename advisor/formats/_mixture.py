"""The mixture rules of llama.cpp presets: llama_tensor_get_type_impl() of src/llama-quant.cpp.

Ported line by line from the llama.cpp that llama-cpp-python 0.3.36 vendors (commit 0c1e570);
"l. N" cites that file. Presets are compared by name ("Q4_K_M" for LLAMA_FTYPE_MOSTLY_Q4_K_M).
The counters (i_attention_wv, i_ffn_*) advance as in C, so callers must visit tensors in
llama.cpp's order (see presets.preset_plan).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from advisor.formats.ggml import ggml_type
from advisor.modelspec import ModelSpec


class Category(str, Enum):
    """enum class tensor_category (l. 26-39)."""

    TOKEN_EMBD = "token_embd"
    ATTENTION_Q = "attn_q"
    ATTENTION_V = "attn_v"
    ATTENTION_K = "attn_k"
    ATTENTION_QKV = "attn_qkv"
    ATTENTION_KV_B = "attn_kv_b"
    ATTENTION_OUTPUT = "attn_output"
    FFN_UP = "ffn_up"
    FFN_GATE = "ffn_gate"
    FFN_DOWN = "ffn_down"
    OUTPUT = "output"
    OTHER = "other"


def category(name: str) -> Category:
    """tensor_get_category() (l. 119-155): first match wins, substrings as in C."""
    if name == "output.weight":
        return Category.OUTPUT
    if name in ("token_embd.weight", "per_layer_token_embd.weight"):
        return Category.TOKEN_EMBD
    for part, cat in (
        ("attn_qkv.weight", Category.ATTENTION_QKV),
        ("attn_kv_b.weight", Category.ATTENTION_KV_B),
        ("attn_v.weight", Category.ATTENTION_V),
        ("attn_k.weight", Category.ATTENTION_K),
        ("attn_q.weight", Category.ATTENTION_Q),
        ("attn_output.weight", Category.ATTENTION_OUTPUT),
        ("ffn_up", Category.FFN_UP),
        ("ffn_gate", Category.FFN_GATE),
        ("ffn_down", Category.FFN_DOWN),
    ):
        if part in name:
            return cat
    return Category.OTHER


def is_attn_v(cat: Category) -> bool:
    """category_is_attn_v() (l. 157-161): fused qkv and MLA kv_b count as attn_v."""
    return cat in (Category.ATTENTION_V, Category.ATTENTION_QKV, Category.ATTENTION_KV_B)


def is_70b(spec: ModelSpec) -> bool:
    """model.type == LLM_TYPE_70B, as each arch's load_arch_hparams sets it (src/models/*.cpp)."""
    arch, n = spec.architecture, spec.n_layers
    if arch == "llama":
        n_expert = int(spec.extra.get("n_expert", 0))
        return n_expert != 8 and n == 80 and spec.n_heads != spec.n_kv_heads
    return (arch in ("qwen2", "deci", "olmo") and n == 80) or (arch == "jais2" and n == 68)


@dataclass
class QuantState:
    """struct quantize_state_impl (l. 167-200): per-run counters; local to one plan."""

    ftype: str
    arch: str
    n_gqa: int
    n_expert: int
    is_70b: bool
    has_imatrix: bool
    n_attention_wv: int
    n_layer: int  # n_ffn_down = n_ffn_gate = n_ffn_up = hparams.n_layer_all (l. 942)
    has_tied_embeddings: bool
    i_attention_wv: int = 0
    i_ffn_down: int = 0
    i_ffn_gate: int = 0
    i_ffn_up: int = 0


def _use_more_bits(i_layer: int, n_layers: int) -> bool:
    # l. 452-454; C integer division, the modulo only runs when i_layer >= n_layers/8
    return (i_layer < n_layers // 8 or i_layer >= 7 * n_layers // 8
            or (i_layer - n_layers // 8) % 3 == 2)


def _layer_info(qs: QuantState, i_layer: int, name: str) -> tuple[int, int]:
    """layer_info lambda (l. 456-470): MoE models take the layer from the name."""
    if qs.n_expert > 1:
        head = name.split(".")
        if len(head) < 3 or head[0] != "blk" or not head[1].lstrip("-").isdigit():
            raise ValueError(f"Failed to determine layer for tensor {name}")
        i_layer = int(head[1])
        if not 0 <= i_layer < qs.n_layer:
            raise ValueError(f"Bad layer {i_layer} for tensor {name}. Must be in [0, {qs.n_layer})")
    return i_layer, qs.n_layer


_IQ1_IQ2 = ("IQ2_XXS", "IQ2_XS", "IQ1_S", "IQ2_S", "IQ2_M", "IQ1_M")


def tensor_type(qs: QuantState, new_type: str, name: str, row_size: int, shape: Sequence[int],
                cat: Category, out_type: str | None = None, emb_type: str | None = None) -> str:
    """llama_tensor_get_type_impl() (l. 446-714): the type the mixture picks, before fallback."""
    ft, arch = qs.ftype, qs.arch
    # glm5-next: these stay at Q8_0 or better (l. 472-485)
    if arch == "glm5-next" and any(s in name for s in ("attn_q_a", "attn_q_b", "nextn.eh_proj")):
        if new_type not in ("F32", "BF16", "F16"):
            return "Q8_0"
    if cat is Category.OUTPUT or (qs.has_tied_embeddings and cat is Category.TOKEN_EMBD):
        # l. 488-511: the output (or tied embedding) gets more bits
        if out_type is not None:
            return out_type
        if ft == "MXFP4_MOE":
            return "Q8_0"
        if arch == "falcon" or row_size % ggml_type(new_type).block_size != 0:
            return "Q8_0"
        if ft in ("IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ2_S", "IQ2_M", "IQ1_M"):
            return "Q5_K"
        return new_type if new_type == "Q8_0" else "Q6_K"
    if ft == "MXFP4_MOE":
        # l. 512-524: stacked experts -> MXFP4, everything else -> Q8_0
        ne2 = shape[-3] if len(shape) >= 3 else 1
        bailing_expert = arch == "bailingmoe3" and cat in (
            Category.FFN_UP, Category.FFN_GATE, Category.FFN_DOWN)
        return "MXFP4" if ne2 > 1 and (arch != "bailingmoe3" or bailing_expert) else "Q8_0"
    if cat is Category.TOKEN_EMBD:
        # l. 525-542
        if emb_type is not None:
            return emb_type
        if ft in ("IQ2_XXS", "IQ2_XS", "IQ1_S", "IQ1_M"):
            return "Q2_K"
        if ft in ("IQ2_S", "IQ2_M", "IQ3_XXS"):
            return "IQ3_S"
        if ft in ("TQ1_0", "TQ2_0", "Q2_0"):
            return "Q4_K"
        return new_type
    if ft in _IQ1_IQ2:
        return _iq1_iq2(qs, new_type, cat)
    if is_attn_v(cat):
        return _attn_v(qs, new_type)
    if cat is Category.ATTENTION_K:
        # l. 605-616
        if qs.n_expert == 8:
            return "Q8_0"
        return {"IQ3_XS": "IQ3_XXS", "IQ3_XXS": "IQ2_S"}.get(ft, new_type)
    if cat is Category.ATTENTION_Q:
        # l. 617-623
        return {"IQ3_XS": "IQ3_XXS", "IQ3_XXS": "IQ2_S"}.get(ft, new_type)
    if cat is Category.FFN_DOWN:
        return _ffn_down(qs, new_type, name)
    if cat is Category.ATTENTION_OUTPUT:
        # l. 669-688
        if arch != "falcon":
            if qs.n_expert == 8:
                if ft in ("Q2_K", "IQ3_XS", "IQ3_XXS", "Q3_K_S", "Q3_K_M", "IQ4_NL", "Q4_K_S",
                          "Q4_K_M", "IQ3_S", "IQ3_M", "IQ4_XS"):
                    return "Q5_K"
                return new_type
            return {"Q2_K": "Q3_K", "IQ3_XXS": "IQ3_S", "Q3_K_M": "Q4_K", "Q3_K_L": "Q5_K",
                    "IQ3_M": "Q4_K"}.get(ft, new_type)
        return "Q4_K" if ft == "Q3_K_L" else new_type
    # l. 689-695, ATTENTION_QKV: unreachable here, category_is_attn_v() took it above.
    if cat in (Category.FFN_GATE, Category.FFN_UP):
        # l. 696-711
        counter = qs.i_ffn_gate if cat is Category.FFN_GATE else qs.i_ffn_up
        i_layer, n_layer = _layer_info(qs, counter, name)
        if ft == "IQ3_XS" and n_layer // 8 <= i_layer < 7 * n_layer // 8:
            new_type = "IQ3_XXS"
        if cat is Category.FFN_GATE:
            qs.i_ffn_gate += 1
        else:
            qs.i_ffn_up += 1
    return new_type


def _iq1_iq2(qs: QuantState, new_type: str, cat: Category) -> str:
    """The IQ1/IQ2 branch (l. 543-566)."""
    ft = qs.ftype
    iq3_s_or_q2_k = "IQ3_S" if ft in ("IQ2_S", "IQ2_M") else "Q2_K"
    if is_attn_v(cat):
        new_type = "Q4_K" if qs.n_gqa >= 4 or qs.n_expert >= 4 else iq3_s_or_q2_k
        qs.i_attention_wv += 1
    elif qs.n_expert == 8 and cat is Category.ATTENTION_K:
        new_type = "Q4_K"
    elif cat is Category.FFN_DOWN:
        if qs.i_ffn_down < qs.n_layer // 8:
            new_type = iq3_s_or_q2_k
        qs.i_ffn_down += 1
    elif cat is Category.ATTENTION_OUTPUT:
        if qs.n_expert == 8:
            new_type = "Q5_K"
        elif ft in ("IQ1_S", "IQ1_M"):
            new_type = "IQ2_XXS"
        elif ft in ("IQ2_S", "IQ2_M"):
            new_type = "IQ3_S"
    return new_type


def _attn_v(qs: QuantState, new_type: str) -> str:
    """The attn_v / attn_qkv / attn_kv_b branch (l. 567-604)."""
    ft, gqa4 = qs.ftype, qs.n_gqa >= 4
    if ft == "Q2_K":
        new_type = "Q4_K" if gqa4 else "Q3_K"
    elif ft == "Q2_K_S" and gqa4:
        new_type = "Q4_K"
    elif ft == "IQ3_XXS":
        new_type = "Q4_K" if gqa4 else ("IQ3_S" if not qs.has_imatrix else "IQ3_XXS")
    elif ft in ("IQ3_XS", "IQ3_S") and gqa4:
        new_type = "Q4_K"
    elif ft == "IQ3_M":
        new_type = "Q4_K"
    elif ft == "Q3_K_M":
        new_type = "Q5_K" if qs.i_attention_wv < 2 else "Q4_K"
    elif ft == "Q3_K_L":
        new_type = "Q5_K"
    elif ft in ("IQ4_NL", "IQ4_XS") and gqa4:
        new_type = "Q5_K"
    elif ft in ("Q4_K_M", "Q5_K_M") and _use_more_bits(qs.i_attention_wv, qs.n_attention_wv):
        new_type = "Q6_K"
    elif ft == "Q4_K_S" and qs.i_attention_wv < 4:
        new_type = "Q5_K"
    if qs.is_70b and new_type in ("Q3_K", "Q4_K"):
        # "8 heads sharing the same attn_v weights ... nearly negligible increase in model size"
        new_type = "Q5_K"
    if qs.n_expert == 8:
        new_type = "Q8_0"
    qs.i_attention_wv += 1
    return new_type


def _ffn_down(qs: QuantState, new_type: str, name: str) -> str:
    """The ffn_down branch (l. 624-668)."""
    ft, falcon = qs.ftype, qs.arch == "falcon"
    i_layer, n_layer = _layer_info(qs, qs.i_ffn_down, name)
    if ft == "Q2_K":
        new_type = "Q3_K"
    elif ft == "Q2_K_S":
        if i_layer < n_layer // 8:
            new_type = "Q4_K"
    elif ft == "IQ3_XXS" and not qs.has_imatrix:
        new_type = "Q4_K" if i_layer < n_layer // 8 else "Q3_K"
    elif ft == "Q3_K_M":
        new_type = ("Q5_K" if i_layer < n_layer // 16
                    else "Q4_K" if not falcon or _use_more_bits(i_layer, n_layer) else "Q3_K")
    elif ft == "IQ3_M" and (i_layer < n_layer // 8
                            or (qs.n_expert == 8 and _use_more_bits(i_layer, n_layer))):
        new_type = "Q4_K"
    elif ft == "Q3_K_L":
        new_type = "Q4_K" if falcon else "Q5_K"
    elif ft == "Q4_K_M":
        if falcon:
            new_type = ("Q6_K" if i_layer < n_layer // 16
                        else "Q5_K" if _use_more_bits(i_layer, n_layer) else "Q4_K")
        elif _use_more_bits(i_layer, n_layer):
            new_type = "Q6_K"
    elif i_layer < n_layer // 8 and ft in ("IQ4_NL", "IQ4_XS") and not qs.has_imatrix:
        new_type = "Q5_K"
    elif ft == "Q5_K_M" and _use_more_bits(i_layer, n_layer):
        new_type = "Q6_K"
    elif ft == "Q4_K_S" and not falcon and i_layer < n_layer // 8:
        new_type = "Q5_K"
    elif ft in ("Q4_0", "Q5_0") and qs.has_imatrix and i_layer < n_layer // 8:
        # "Guard against craziness in the first few ffn_down layers" (imatrix runs only)
        new_type = "Q4_1" if ft == "Q4_0" else "Q5_1"
    qs.i_ffn_down += 1
    return new_type
