"""The serving files' context (issue 21): the model's trained context, capped by the memory
target, never below the workload; --context overrides it."""

from __future__ import annotations

import pytest

from advisor.artifact.serving import Serving, serving_for
from advisor.errors import BadInput
from advisor.estimate import Workload, estimate
from advisor.inspect import DEFAULT_MODEL, inspect_model
from advisor.probe.catalogue import load_target
from advisor.space.named import plan_for_format


@pytest.fixture(scope="module")
def case() -> tuple:
    spec = inspect_model(DEFAULT_MODEL)
    return spec, plan_for_format(spec, "Q8_0"), load_target("x86-server")


def _total(case: tuple, wl: Workload, context: int) -> float:
    spec, plan, hw = case
    w = Workload(prompt_tokens=wl.prompt_tokens, new_tokens=wl.new_tokens,
                 concurrency=wl.concurrency, context=context)
    return estimate(spec, plan, hw, w).total_memory.value


def test_the_trained_context_when_memory_allows(case: tuple) -> None:
    spec, plan, hw = case
    s = serving_for(spec, plan, hw, Workload(prompt_tokens=32, new_tokens=8))
    assert s.context == spec.context_length == 8192 and "trained" in s.why


def test_a_memory_target_caps_the_context_to_what_is_predicted_to_fit(case: tuple) -> None:
    spec, plan, hw = case
    wl = Workload(prompt_tokens=32, new_tokens=8, concurrency=4)
    limit = int((_total(case, wl, 40) + _total(case, wl, 8192)) / 2)
    s = serving_for(spec, plan, hw, wl, memory_limit=limit)
    assert 40 < s.context < 8192 and s.context % 256 == 0 and s.parallel == 4
    assert _total(case, wl, s.context) <= limit < _total(case, wl, s.context + 256)
    assert "capped" in s.why and "predicted" in s.why


def test_never_below_the_workload_and_an_explicit_context_wins(case: tuple) -> None:
    spec, plan, hw = case
    wl = Workload(prompt_tokens=1000, new_tokens=200)
    s = serving_for(spec, plan, hw, wl, memory_limit=1)
    assert s.context == 1200 and "not to fit" in s.why
    assert serving_for(spec, plan, hw, wl, requested=3000).context == 3000
    with pytest.raises(BadInput):
        serving_for(spec, plan, hw, wl, requested=-1)
    with pytest.raises(BadInput):
        Serving(4096, parallel=0)
