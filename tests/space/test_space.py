"""The GGUF plan space: candidates llama.cpp really writes, floors, fixed tensors, bytes."""

from __future__ import annotations

import pytest

from advisor import formats
from advisor.errors import BadInput
from advisor.modelspec import ModelSpec, Role
from advisor.space.choices import (
    DEFAULT_MENU,
    PlanSpace,
    gguf_plan_space,
    tensor_candidates,
)


@pytest.fixture(scope="module")
def spec() -> ModelSpec:
    from advisor.inspect import inspect_model

    return inspect_model("smollm2-135m")


def test_576_wide_rows_list_the_fallbacks_once(spec: ModelSpec) -> None:
    space = gguf_plan_space(spec)
    q = space.choice("blk.0.attn_q.weight")
    # Q2_K/Q3_K -> Q4_0, Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0 on 576-wide rows
    assert q.types == ("Q4_0", "Q5_0", "Q5_1", "Q8_0")
    assert all(formats.fits(t, 576) for t in q.types)
    down = space.choice("blk.0.ffn_down.weight")  # rows of 1536 take every K-quant
    assert set(down.types) == set(DEFAULT_MENU)
    assert list(down.nbytes) == sorted(down.nbytes)
    assert all(b == formats.tensor_bytes(t, down.shape) for t, b in zip(down.types, down.nbytes))


def test_candidates_are_what_llama_cpp_writes(spec: ModelSpec) -> None:
    space = gguf_plan_space(spec)
    for t in space.tensors:
        for g in t.types:
            assert formats.fallback(g, t.shape[-1]) == g


def test_norms_are_fixed_f32_and_embedding_has_a_floor(spec: ModelSpec) -> None:
    space = gguf_plan_space(spec)
    for t in space.tensors:
        if t.role is Role.NORM:
            assert t.types == ("F32",) and not t.free
    emb = space.choice("token_embd.weight")
    assert emb.types == ("Q8_0",)  # Q6_K falls back to Q8_0 on 576-wide rows
    low = gguf_plan_space(spec, floor="Q4_0")
    assert low.choice("token_embd.weight").types == ("Q4_0", "Q5_0", "Q5_1", "Q8_0")


def test_floor_type_is_kept_when_the_menu_lacks_it() -> None:
    types = tensor_candidates((1000, 512), Role.LM_HEAD, ["Q2_K", "Q4_K"], floor="Q6_K")
    assert types == ("Q6_K",)


def test_imatrix_types_need_an_imatrix(spec: ModelSpec) -> None:
    with pytest.raises(BadInput, match="importance matrix"):
        gguf_plan_space(spec, menu=["IQ2_XS", "Q4_0"])
    space = gguf_plan_space(spec, imatrix=True)
    assert "IQ4_NL" in space.choice("blk.0.attn_q.weight").types  # IQ types fall back to it
    assert "IQ3_S" in space.choice("blk.0.ffn_down.weight").types


def test_unknown_type_is_refused(spec: ModelSpec) -> None:
    with pytest.raises(BadInput, match="unknown GGML type"):
        gguf_plan_space(spec, menu=["Q4_X"])


def test_preset_plans_live_in_the_space(spec: ModelSpec) -> None:
    space = gguf_plan_space(spec)
    for name in ("Q3_K_M", "Q4_K_M"):
        plan = formats.preset_plan(spec, name)
        size = space.size(plan)
        assert size == sum(formats.tensor_bytes(g, spec.tensor(n).shape) for n, g in plan.items())
    assert space.min_size() < space.size(formats.preset_plan(spec, "Q3_K_M")) < space.max_size()


def test_complete_validates(spec: ModelSpec) -> None:
    space = gguf_plan_space(spec)
    free = {t.name: t.types[0] for t in space.free}
    full = space.complete(free)
    assert full["blk.0.attn_norm.weight"] == "F32" and len(full) == len(space.tensors)
    with pytest.raises(BadInput, match="lacks"):
        space.complete({})
    with pytest.raises(BadInput, match="not a candidate"):
        space.complete({**free, "blk.0.attn_q.weight": "Q4_K"})
    plan = space.plan(free, label="x")
    assert plan.backend == "gguf" and plan.tensor_formats == full


def test_round_trip(spec: ModelSpec) -> None:
    space = gguf_plan_space(spec)
    again = PlanSpace.from_dict(space.to_dict())
    assert again == space and again.digest() == space.digest()
    assert gguf_plan_space(spec, floor="Q4_0").digest() != space.digest()
