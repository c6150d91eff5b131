"""llama.cpp preset rules on synthetic specs (hand-derived from src/llama-quant.cpp)."""

from __future__ import annotations

import dataclasses
import random

import pytest

from advisor import formats
from advisor.errors import BadInput
from advisor.modelspec import SourceFormat
from tests.formats.synth import synthetic_spec

N = 16
# use_more_bits(i, 16): i < 2 || i >= 14 || (i - 2) % 3 == 2
MORE_BITS = {0, 1, 4, 7, 10, 13, 14, 15}


def layer_types(plan: dict[str, str], part: str) -> list[str]:
    return [plan[f"blk.{i}.{part}.weight"] for i in range(N)]


def test_q4_k_m_rules() -> None:
    plan = formats.preset_plan(synthetic_spec(), "Q4_K_M")
    assert plan["output.weight"] == "Q6_K"
    assert plan["token_embd.weight"] == "Q4_K"  # untied: the default type
    assert plan["output_norm.weight"] == "F32"
    more = ["Q6_K" if i in MORE_BITS else "Q4_K" for i in range(N)]
    assert layer_types(plan, "attn_v") == more
    assert layer_types(plan, "ffn_down") == more
    for part in ("attn_q", "attn_k", "attn_output", "ffn_gate", "ffn_up"):
        assert set(layer_types(plan, part)) == {"Q4_K"}, part
    assert set(layer_types(plan, "attn_norm")) == {"F32"}


def test_q3_k_m_rules() -> None:
    plan = formats.preset_plan(synthetic_spec(), "Q3_K_M")
    assert layer_types(plan, "attn_v") == ["Q5_K"] * 2 + ["Q4_K"] * (N - 2)
    assert layer_types(plan, "ffn_down") == ["Q5_K"] + ["Q4_K"] * (N - 1)  # i < n/16
    assert set(layer_types(plan, "attn_output")) == {"Q4_K"}
    assert set(layer_types(plan, "ffn_up")) == {"Q3_K"}
    assert plan["token_embd.weight"] == "Q3_K" and plan["output.weight"] == "Q6_K"


@pytest.mark.parametrize(("n_kv", "attn_v"), [(1, "Q4_K"), (4, "Q3_K")])
def test_q2_k_attn_v_depends_on_gqa(n_kv: int, attn_v: str) -> None:
    plan = formats.preset_plan(synthetic_spec(n_kv_heads=n_kv), "Q2_K")
    assert set(layer_types(plan, "attn_v")) == {attn_v}
    assert set(layer_types(plan, "ffn_down")) == {"Q3_K"}
    assert set(layer_types(plan, "attn_output")) == {"Q3_K"}
    assert set(layer_types(plan, "attn_q")) == {"Q2_K"}


def test_tied_embedding_takes_the_output_rule() -> None:
    plan = formats.preset_plan(synthetic_spec(tied=True), "Q4_K_M")
    assert "output.weight" not in plan
    assert plan["token_embd.weight"] == "Q6_K"
    # a row that no 256-block divides: the output rule picks Q8_0 outright
    plan = formats.preset_plan(synthetic_spec(hidden=320, n_heads=5, tied=True), "Q4_K_M")
    assert plan["token_embd.weight"] == "Q8_0"
    assert plan["blk.0.attn_q.weight"] == "Q5_0"  # Q4_K falls back on rows of 320


def test_moe_with_8_experts() -> None:
    plan = formats.preset_plan(synthetic_spec(n_expert=8), "Q4_K_M")
    assert set(layer_types(plan, "attn_v")) == {"Q8_0"}
    assert set(layer_types(plan, "attn_k")) == {"Q8_0"}
    assert set(layer_types(plan, "attn_output")) == {"Q5_K"}
    assert layer_types(plan, "ffn_down_exps") == [
        "Q6_K" if i in MORE_BITS else "Q4_K" for i in range(N)
    ]
    assert set(layer_types(plan, "ffn_gate_inp")) == {"F32"}  # never quantized


def test_70b_bumps_attn_v() -> None:
    big = synthetic_spec(n_layers=80, n_heads=8, n_kv_heads=1, hidden=512, ffn=512)
    plan = formats.preset_plan(big, "Q3_K_M")
    assert {plan[f"blk.{i}.attn_v.weight"] for i in range(80)} == {"Q5_K"}
    other = dataclasses.replace(big, architecture="gemma")
    plan = formats.preset_plan(other, "Q3_K_M")
    assert plan["blk.5.attn_v.weight"] == "Q4_K"


def test_plan_does_not_depend_on_tensor_order() -> None:
    spec = synthetic_spec()
    shuffled = list(spec.tensors)
    random.Random(1).shuffle(shuffled)
    other = dataclasses.replace(spec, tensors=tuple(shuffled))
    assert formats.preset_plan(other, "Q4_K_M") == formats.preset_plan(spec, "Q4_K_M")
    assert list(formats.preset_plan(other, "Q4_K_M")) == [t.canonical for t in shuffled]


def test_options() -> None:
    spec = synthetic_spec()
    pure = formats.preset_plan(spec, "Q4_K_M", pure=True)
    assert {v for k, v in pure.items() if "norm" not in k} == {"Q4_K"}
    plan = formats.preset_plan(spec, "Q4_K_M", output_tensor_type="Q8_0",
                               token_embedding_type="q5_k")
    assert plan["output.weight"] == "Q8_0" and plan["token_embd.weight"] == "Q5_K"
    plan = formats.preset_plan(spec, "Q4_K_M", overrides=[(r"attn_q\.", "Q8_0")])
    assert set(layer_types(plan, "attn_q")) == {"Q8_0"}
    assert plan["blk.0.attn_v.weight"] == "Q6_K"
    plan = formats.preset_plan(spec, "Q4_K_M", quantize_output_tensor=False)
    assert plan["output.weight"] == "F16"  # kept as the source stores it
    # imatrix: Q4_0 guards the first ffn_down layers with Q4_1
    plan = formats.preset_plan(spec, "Q4_0", imatrix=True)
    assert layer_types(plan, "ffn_down")[:3] == ["Q4_1", "Q4_1", "Q4_0"]


def test_float_presets() -> None:
    spec = synthetic_spec()
    for name in ("F16", "BF16", "F32"):
        plan = formats.preset_plan(spec, name)
        assert plan["blk.3.attn_q.weight"] == name and plan["output.weight"] == name
        assert plan["blk.3.attn_norm.weight"] == "F32"


def test_hf_source_keeps_norms_f32() -> None:
    spec = synthetic_spec()
    hf = dataclasses.replace(spec, format=SourceFormat.HF)
    assert formats.preset_plan(hf, "Q4_K_M") == formats.preset_plan(spec, "Q4_K_M")


def test_requires_imatrix() -> None:
    spec = synthetic_spec()
    for name in ("IQ2_XXS", "IQ2_XS", "IQ1_S", "IQ1_M", "IQ3_XXS", "IQ3_XS", "Q2_K_S", "IQ2_S"):
        assert formats.requires_imatrix(spec, name), name
    for name in ("Q2_K", "Q4_K_M", "IQ4_XS", "IQ4_NL", "IQ3_S", "Q8_0", "F16"):
        assert not formats.requires_imatrix(spec, name), name


def test_names_and_errors() -> None:
    names = formats.preset_names()
    for name in ("Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_0", "Q4_1", "Q5_0", "Q5_1",
                 "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K", "Q8_0", "F16", "BF16",
                 "IQ4_NL", "IQ4_XS"):
        assert name in names and formats.is_preset(name.lower())
    assert formats.preset("Q4_K_M").ftype == 15
    with pytest.raises(BadInput) as err:
        formats.preset_plan(synthetic_spec(), "Q4_K_X")
    assert "Q4_K_X" in str(err.value) and "Q4_K_M" in str(err.value)
