"""Exact allocation: the knapsack DP against brute force on tiny instances."""

from __future__ import annotations

import random

import pytest

from advisor.errors import Infeasible
from advisor.search.exact import Allocator, allocate, brute_force, pareto_frontier


def _instance(rng: random.Random, n_items: int) -> list:
    items = []
    for i in range(n_items):
        opts = [(f"T{j}", rng.randint(1, 40) * rng.choice([1, 3, 64]), rng.random())
                for j in range(rng.randint(1, 4))]
        items.append((f"t{i}", opts))
    return items


def _bounds(items: list) -> tuple[int, int]:
    return (sum(min(b for _, b, _ in o) for _, o in items),
            sum(max(b for _, b, _ in o) for _, o in items))


@pytest.mark.parametrize("seed", range(200))
def test_dp_matches_brute_force(seed: int) -> None:
    rng = random.Random(seed)
    items = _instance(rng, rng.randint(1, 5))
    lo, hi = _bounds(items)
    budget = rng.randint(lo, hi)
    dp = allocate(items, budget)
    bf = brute_force(items, budget)
    assert bf is not None
    assert dp.nbytes <= budget
    assert dp.cost == pytest.approx(bf.cost, abs=1e-12)
    # the reported bytes and cost are those of the returned assignment
    opts = dict(items)
    sizes = {n: {g: b for g, b, _ in o} for n, o in opts.items()}
    assert dp.nbytes == sum(sizes[n][t] for n, t in dp.assignment.items())
    assert dp.cost == pytest.approx(sum(dict((g, c) for g, _, c in opts[n])[t]
                                        for n, t in dp.assignment.items()), abs=1e-12)


@pytest.mark.parametrize("seed", range(100))
def test_coarse_units_stay_feasible(seed: int) -> None:
    """With too few DP cells the unit is coarser and sizes are rounded up: never over budget,
    never better than the true optimum."""
    rng = random.Random(1000 + seed)
    items = _instance(rng, rng.randint(2, 5))
    lo, hi = _bounds(items)
    budget = rng.randint(lo, hi)
    alloc = Allocator(items, budget, max_units=3)
    got = alloc.best(budget)
    bf = brute_force(items, budget)
    assert bf is not None
    assert got.nbytes <= budget
    assert got.cost >= bf.cost - 1e-12
    if alloc.exact:
        assert got.cost == pytest.approx(bf.cost, abs=1e-12)


def test_unit_is_the_gcd_and_exact() -> None:
    items = [("a", [("x", 100, 1.0), ("y", 160, 0.5)]), ("b", [("x", 40, 2.0), ("y", 70, 0.0)])]
    alloc = Allocator(items)
    assert alloc.exact and alloc.unit == 30  # gcd(60, 30)
    assert alloc.best(170).assignment == {"a": "x", "b": "y"}


@pytest.mark.parametrize("seed", range(40))
def test_frontier_is_the_pareto_set(seed: int) -> None:
    rng = random.Random(5000 + seed)
    items = _instance(rng, rng.randint(1, 4))
    front = pareto_frontier(items)
    sizes = [a.nbytes for a in front]
    costs = [a.cost for a in front]
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)
    assert all(c2 < c1 for c1, c2 in zip(costs, costs[1:]))
    for a in front:  # each point is the optimum at its own size
        bf = brute_force(items, a.nbytes)
        assert bf is not None and a.cost == pytest.approx(bf.cost, abs=1e-12)
    lo, hi = _bounds(items)
    for budget in range(lo, hi + 1, max(1, (hi - lo) // 17)):  # every budget hits a point
        best = brute_force(items, budget)
        assert best is not None
        on_front = [a for a in front if a.nbytes <= budget]
        assert on_front and on_front[-1].cost == pytest.approx(best.cost, abs=1e-12)


def test_below_the_smallest_plan_is_infeasible() -> None:
    items = [("a", [("x", 10, 1.0), ("y", 20, 0.0)])]
    with pytest.raises(Infeasible):
        allocate(items, 9)


def test_ties_prefer_the_option_listed_first() -> None:
    items = [("a", [("small", 10, 1.0), ("big", 20, 1.0)])]
    assert allocate(items, 100).assignment == {"a": "small"}


def test_rejects_empty_input() -> None:
    with pytest.raises(ValueError):
        Allocator([])
    with pytest.raises(ValueError):
        Allocator([("a", [])])
