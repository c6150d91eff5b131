"""Pure helpers of the recommendation report: rank correlation, Pareto front, targets."""

from __future__ import annotations

import pytest

from advisor.errors import BadInput
from advisor.recommend import pareto_front, spearman, targets_from_args


def test_spearman_matches_known_values() -> None:
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ties share their mean rank: ranks x = 1,2.5,2.5,4 ; y = 1,2,3,4
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9486832980505138)
    assert spearman([1, 2], [2, 1]) is None
    assert spearman([1, 1, 1], [1, 2, 3]) is None


def test_pareto_front() -> None:
    pts = [("a", 10, 0.5), ("b", 20, 0.1), ("c", 15, 0.6), ("d", 20, 0.2), ("e", 5, 0.9)]
    assert pareto_front(pts) == ["e", "a", "b"]


def _targets(**kw: object):
    base = dict(prompt_tokens=32, new_tokens=8, concurrency=1, context=0, vram=None, mem=None,
                max_size=None, p95=None, max_kld=None)
    base.update(kw)
    return targets_from_args(**base)  # type: ignore[arg-type]


def test_targets_parse_and_reject() -> None:
    t = _targets(max_size="90MB", p95="250ms", mem="1G", max_kld="0.1")
    assert (t.max_size_bytes, t.p95_s, t.mem_bytes, t.max_kld) == (90_000_000, 0.25, 1 << 30,
                                                                    0.1)
    for bad in (dict(max_size="ten"), dict(p95="3 parsecs"), dict(max_kld="-1"),
                dict(vram="0"), dict(prompt_tokens=0)):
        with pytest.raises(BadInput):
            _targets(**bad)
