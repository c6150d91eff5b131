"""The recommend stages as plain functions on typed values, without a model run: the budget, the
measure-in-pick-order loop, the verdicts against the targets, the pick and the infeasible exit."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from advisor.errors import Infeasible
from advisor.estimate import estimate
from advisor.measurement import NATS, BenchResult, QualityResult, measured
from advisor.plan import QuantPlan
from advisor.probe import get_hardware
from advisor.recommend.budget import plan_budget
from advisor.recommend.candidates import Candidate, Realized
from advisor.recommend.config import EVAL_WINDOW, RecommendConfig, targets_from_args
from advisor.recommend.pick import pick
from advisor.recommend.results import judge, measure_candidates
from advisor.space import gguf_plan_space, plan_for_format
from tests.formats.synth import synthetic_spec
from tests.measure.quality.test_measurement import bench as a_bench
from tests.measure.quality.test_measurement import quality as a_quality

CFG = RecommendConfig(eval_windows=3)


def _targets(**limits: Any) -> Any:
    return targets_from_args(prompt_tokens=32, new_tokens=8, concurrency=2, context=0,
                             vram=None, mem=limits.get("mem"), max_size=limits.get("max_size"),
                             p95=limits.get("p95"), max_kld=limits.get("max_kld"))


def _realized(label: str, size: int, kind: str = "search") -> Realized:
    est = {"file_size": {"value": size}, "total_memory": {"value": 2.0 * size},
           "request_latency": {"value": 0.5}, "device": "CPU (this host)"}
    report = {"size": {"value": size, "unit": "bytes", "origin": "measured"}, "estimate": est,
              "plan": {"digest": label}, "measurements": {}}
    plan = QuantPlan("gguf", {"blk.0.attn_q.weight": "Q4_K"}, label=label)
    return Realized(Candidate(label, kind, plan), Path(label), report)


def _kl(q: QualityResult, kl: float) -> QualityResult:
    return replace(q, mean_kl=measured(kl, NATS), n_windows=CFG.eval_windows, window=EVAL_WINDOW)


def test_the_budget_takes_metadata_and_alignment_off_the_binding_target() -> None:
    spec = synthetic_spec()
    space = gguf_plan_space(spec)
    hw = get_hardware("x86-server", None)
    targets = _targets(max_size=str(spec.metadata_bytes + space.max_size()))
    reference = estimate(spec, plan_for_format(spec, "Q8_0"), hw, targets.workload)
    b = plan_budget(spec, reference, targets, space)
    assert b.binding == "max-size" and b.file_bytes == targets.max_size_bytes
    overhead = spec.metadata_bytes + 32 * len(space.tensors)
    assert b.tensor_bytes == targets.max_size_bytes - overhead
    assert b.smallest_plan_bytes == overhead + space.min_size()
    assert not b.below_smallest(space) and b.search_bytes(space) == b.tensor_bytes
    tight = plan_budget(spec, reference, _targets(max_size=str(b.smallest_plan_bytes - 1)), space)
    assert tight.below_smallest(space)
    # no target given: the device's own memory binds (the host's RAM on a CPU target), and a
    # budget above the largest plan searches the whole space
    free = plan_budget(spec, reference, _targets(), space)
    assert free.binding == "device memory" and free.search_bytes(space) == space.max_size()


def test_benches_run_in_pick_order_until_one_meets_every_target() -> None:
    realized = [_realized("a", 100), _realized("b", 90), _realized("c", 80)]
    kls = {"a": 0.30, "b": 0.10, "c": 0.20}
    benched: list[str] = []

    def bench(r: Realized) -> BenchResult:
        benched.append(r.candidate.label)
        return a_bench()

    results = measure_candidates(realized, lambda r: _kl(a_quality(), kls[r.candidate.label]),
                                 bench, True, _targets(), CFG)
    assert benched == ["b"]  # the lowest KL met every target: no other bench can change the pick
    by = {r.label: r for r in results}
    assert by["b"].memory.origin.value == "measured" and by["b"].bench is not None
    assert by["a"].bench is None and "not benched" in by["a"].p95.what
    best, reason, _ = pick(results)
    assert best.label == "b" and "0.1000" in reason
    every = measure_candidates(realized, lambda r: _kl(a_quality(), kls[r.candidate.label]),
                               bench, True, _targets(), replace(CFG, bench_all=True))
    assert len(benched) == 4 and all(r.bench is not None for r in every)


def test_a_stored_measurement_is_reused_and_hf_checkpoints_are_never_benched() -> None:
    stored = _realized("s", 100)
    stored.report["measurements"]["quality"] = _kl(a_quality(), 0.05).to_dict()
    hf = _realized("W4A16-g128", 120, kind="checkpoint")

    def fail(_: Realized) -> Any:
        raise AssertionError("measured again")

    results = measure_candidates([stored, hf], lambda r: (fail(r) if r is stored
                                                          else _kl(a_quality(), 0.2)),
                                 lambda r: a_bench() if r is stored else fail(r), True,
                                 _targets(), replace(CFG, bench_all=True))
    assert [r.kl for r in results] == [0.05, 0.2]
    assert results[1].bench is None and results[1].p95.origin.value == "predicted"
    # a bench stored for this workload and request count is reused too
    stored.report["measurements"]["bench"] = results[0].bench.to_dict()  # type: ignore[union-attr]
    again = measure_candidates([stored], fail, fail, True, _targets(), CFG)
    assert again[0].bench is not None


def test_violations_name_the_flag_as_written_and_the_infeasible_exit_the_binding_one() -> None:
    targets = _targets(max_size="95", max_kld="0.1")
    cfg = replace(CFG, flags={"max-size": "95", "max-kld": "0.1"})
    big = judge(_realized("big", 100), _kl(a_quality(), 0.05), None, True, targets, cfg)
    bad = judge(_realized("bad", 90), _kl(a_quality(), 0.4), None, True, targets, cfg)
    assert [v.target for v in big.violations] == ["size"]
    assert str(big.violations[0]) == "size 100 > --max-size 95"
    assert [v.target for v in bad.violations] == ["KL"]
    with pytest.raises(Infeasible) as e:
        pick([big, bad, replace(bad, realized=_realized("bad2", 91))])
    assert "--max-kld 0.1 (max-kld binds: 2 of 3" in str(e.value)
    assert "best measured KL is 0.0500 (big" in e.value.fix


def test_the_floor_is_relaxed_when_it_alone_makes_the_budget_infeasible() -> None:
    from advisor.recommend.budget import fit_space, skipped_search
    from advisor.recommend.pick import search_notes

    spec = synthetic_spec()
    hw = get_hardware("x86-server", None)
    floored = gguf_plan_space(spec)
    free = gguf_plan_space(spec, floor_roles=())
    assert free.min_size() < floored.min_size()
    overhead = spec.metadata_bytes + 32 * len(floored.tensors)
    between = overhead + (free.min_size() + floored.min_size()) // 2
    targets = _targets(max_size=str(between))
    reference = estimate(spec, plan_for_format(spec, "Q8_0"), hw, targets.workload)
    space, sub, budget, floor = fit_space(spec, reference, targets, imatrix=False)
    assert floor["relaxed"] and "ordinary tensors" in floor["why"] and sub is None
    assert space.min_size() == free.min_size() and not budget.below_smallest(space)
    assert "floor relaxed" in search_notes({"floor": floor})
    # above the floored minimum the search runs in both: the whole space and the floored one
    roomy = _targets(max_size=str(overhead + floored.max_size()))
    space, sub, _, floor = fit_space(spec, reference, roomy, imatrix=False)
    assert not floor["relaxed"] and space.min_size() == free.min_size()
    assert sub is not None and sub.min_size() == floored.min_size()
    # under even the floorless minimum the search cannot run: the report names where it can
    tiny = _targets(max_size=str(overhead + free.min_size() // 2))
    space, sub, budget, floor = fit_space(spec, reference, tiny, imatrix=False)
    assert floor["relaxed"] and budget.below_smallest(space)
    info = skipped_search(budget, space)
    assert info["smallest_searchable_file_bytes"] == overhead + free.min_size()
    note = search_notes(info)
    assert "did not run" in note and f"{overhead + free.min_size():,}" in note


def test_the_floor_keeps_the_head_and_a_tied_embedding_only() -> None:
    from advisor.modelspec import Role
    from advisor.space import floored_roles

    assert floored_roles(synthetic_spec(tied=True)) == (Role.EMBEDDING,)
    untied = synthetic_spec(tied=False)
    assert floored_roles(untied) == (Role.LM_HEAD,)
    space = gguf_plan_space(untied)
    cheapest = {c.role: c.types[0] for c in space.tensors}
    assert cheapest[Role.LM_HEAD] == "Q6_K" and cheapest[Role.EMBEDDING] == "Q2_K"


def test_the_pick_against_the_best_preset_carries_a_paired_error_bar() -> None:
    realized = [_realized("s", 90), _realized("Q3_K_M", 95, kind="preset")]
    windows = {"s": (0.08, 0.21, 0.12), "Q3_K_M": (0.10, 0.30, 0.15)}

    def judged(kls: dict[str, tuple[float, ...]]) -> list[Any]:
        return measure_candidates(
            realized, lambda r: replace(_kl(a_quality(), sum(kls[r.candidate.label]) / 3),
                                        kl_windows=kls[r.candidate.label]),
            lambda r: a_bench(), True, _targets(), CFG)

    results = judged(windows)
    best, reason, v = pick(results)
    assert best.label == "s" and v is not None and v["preset"] == "Q3_K_M"
    assert v["resolved"] and v["n_windows"] == 3
    assert v["ratio"] == pytest.approx(0.41 / 0.55)
    assert f"{v['ratio']:.2f}x the preset's" in reason and "a resolved difference" in reason
    # the same means, but the pick is not better on every window: not resolved, and said so
    mixed = judged({"s": (0.25, 0.06, 0.10), "Q3_K_M": (0.10, 0.30, 0.15)})
    best, reason, v = pick(mixed)
    assert best.label == "s" and v is not None and not v["resolved"]
    assert "not resolved" in reason and "--eval-windows" in reason
