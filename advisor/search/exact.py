"""Exact allocation on an additive table: the cheapest plan within a byte budget, and the frontier.

Choosing one type per tensor to minimise a sum of per-tensor costs under a total-bytes budget is a
multiple-choice knapsack. It is solved by dynamic programming over bytes counted in a unit: the
gcd of every candidate's bytes above its tensor's smallest, which makes the DP exact (6,912 bytes
and 10,628 cells on the embedded SmolLM2-135M). When the gcd would need more than `max_units`
cells the unit is coarser and every candidate's excess is rounded *up* to it, so a plan the DP
calls feasible always is (optimal among plans whose rounded size fits; `exact` says which).
One pass gives the best cost of every budget at once, hence the whole size/cost Pareto frontier.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from advisor.errors import Infeasible

# One item per tensor: (name, [(type, bytes, cost), ...]).
Option = tuple[str, int, float]
Item = tuple[str, Sequence[Option]]
MAX_UNITS = 1 << 20


@dataclass(frozen=True)
class Allocation:
    """One type per tensor, its total bytes and its total (surrogate) cost."""

    assignment: dict[str, str]
    nbytes: int
    cost: float


class Allocator:
    """Multiple-choice knapsack DP over `items`, for every budget up to `max_budget` at once."""

    def __init__(self, items: Sequence[Item], max_budget: int | None = None,
                 max_units: int = MAX_UNITS) -> None:
        if not items:
            raise ValueError("Allocator needs at least one item")
        self.names = [name for name, _ in items]
        self.options = [list(opts) for _, opts in items]
        for name, opts in zip(self.names, self.options):
            if not opts:
                raise ValueError(f"item {name} has no options")
            if len(opts) > 255:
                raise ValueError(f"item {name} has {len(opts)} options; at most 255")
        base = [min(b for _, b, _ in opts) for opts in self.options]
        self.min_bytes = sum(base)
        extra = [[b - lo for _, b, _ in opts] for opts, lo in zip(self.options, base)]
        span = sum(max(e) for e in extra)
        cap_bytes = span if max_budget is None else max(0, min(span, max_budget - self.min_bytes))
        g = 0
        for e in extra:
            for x in e:
                g = math.gcd(g, x)
        g = max(g, 1)
        if cap_bytes // g <= max_units:
            self.unit, self.exact = g, True
        else:
            self.unit, self.exact = -(-cap_bytes // max_units), False
        self.weights = [[-(-x // self.unit) for x in e] for e in extra]  # ceil: conservative
        self.cap = min(cap_bytes // self.unit, sum(max(w) for w in self.weights))
        self._solve()

    def _solve(self) -> None:
        n = self.cap + 1
        dp = np.zeros(n)  # best cost with total weight <= k, over the items so far
        self.choice = np.zeros((len(self.options), n), dtype=np.uint8)
        for i, (opts, ws) in enumerate(zip(self.options, self.weights)):
            new = np.full(n, np.inf)
            pick = self.choice[i]
            for j, ((_, _, cost), w) in enumerate(zip(opts, ws)):
                if w >= n:
                    continue
                cand = np.full(n, np.inf)
                cand[w:] = dp[:n - w] + cost
                better = cand < new  # strict: on ties the earlier (listed first) option stays
                new[better] = cand[better]
                pick[better] = j
            dp = new
        self.best_cost = dp

    def _units(self, budget: int) -> int:
        if budget < self.min_bytes:
            raise Infeasible(f"a budget of {budget} bytes is below the smallest plan "
                             f"({self.min_bytes} bytes)", "raise the size budget")
        return min(self.cap, (budget - self.min_bytes) // self.unit)

    def _backtrack(self, k: int) -> Allocation:
        assignment = {}
        nbytes, cost = 0, 0.0
        for i in range(len(self.options) - 1, -1, -1):
            j = int(self.choice[i, k])
            gtype, b, c = self.options[i][j]
            assignment[self.names[i]] = gtype
            nbytes += b
            cost += c
            k -= self.weights[i][j]
        return Allocation({n: assignment[n] for n in self.names}, nbytes, cost)

    def best(self, budget: int) -> Allocation:
        """The minimum-cost plan of at most `budget` bytes (Infeasible below the smallest)."""
        k = self._units(budget)
        if not np.isfinite(self.best_cost[k]):
            raise Infeasible(f"no plan fits {budget} bytes", "raise the size budget")
        return self._backtrack(k)

    def frontier_points(self) -> tuple[np.ndarray, np.ndarray]:
        """(bytes upper bounds, best costs) where the best cost strictly drops: the frontier's
        corners without building their plans (bytes exact when `exact`)."""
        c = self.best_cost
        keep = np.flatnonzero(np.isfinite(c) & np.r_[True, c[1:] < c[:-1]])
        return self.min_bytes + keep * self.unit, c[keep]

    def frontier(self) -> list[Allocation]:
        """Every Pareto-optimal (bytes, cost) plan, smallest first: each strictly cheaper in
        cost than all smaller ones."""
        c = self.best_cost
        keep = np.flatnonzero(np.isfinite(c) & np.r_[True, c[1:] < c[:-1]])
        plans = sorted((self._backtrack(int(k)) for k in keep), key=lambda a: (a.nbytes, a.cost))
        out: list[Allocation] = []
        for a in plans:
            if not out or a.cost < out[-1].cost:
                out.append(a)
        return out


def allocate(items: Sequence[Item], budget: int, max_units: int = MAX_UNITS) -> Allocation:
    """The minimum-total-cost choice of one option per item within `budget` bytes."""
    return Allocator(items, max_budget=budget, max_units=max_units).best(budget)


def pareto_frontier(items: Sequence[Item], max_units: int = MAX_UNITS) -> list[Allocation]:
    """The whole size/cost Pareto frontier of `items`, smallest plan first."""
    return Allocator(items, max_units=max_units).frontier()


def brute_force(items: Sequence[Item], budget: int) -> Allocation | None:
    """Exhaustive reference for tiny instances (tests): the best plan, ties to fewer bytes."""
    import itertools

    best: Allocation | None = None
    for combo in itertools.product(*(opts for _, opts in items)):
        nbytes = sum(b for _, b, _ in combo)
        if nbytes > budget:
            continue
        cost = sum(c for _, _, c in combo)
        if best is None or (cost, nbytes) < (best.cost, best.nbytes):
            best = Allocation({n: o[0] for (n, _), o in zip(items, combo)}, nbytes, cost)
    return best
