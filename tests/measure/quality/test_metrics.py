from __future__ import annotations

import math

import numpy as np
import pytest

from advisor.measure.quality import metrics
from advisor.measure.quality.cache import decode_logprobs, encode_logprobs


def test_log_softmax_normalises() -> None:
    x = np.array([[1.0, 2.0, 3.0], [1000.0, 1000.0, -1000.0]])
    lp = metrics.log_softmax(x)
    assert lp.dtype == np.float64
    np.testing.assert_allclose(np.exp(lp).sum(-1), 1.0)
    np.testing.assert_allclose(lp[1], [math.log(0.5), math.log(0.5), -2000.0 - math.log(2)])


def test_kl_identical_is_zero() -> None:
    x = np.random.default_rng(0).normal(size=(5, 100)) * 4
    lp = metrics.log_softmax(x)
    np.testing.assert_array_equal(metrics.kl_divergence(lp, lp), 0.0)


def test_kl_known_pair() -> None:
    p, q = np.array([[0.5, 0.5]]), np.array([[0.9, 0.1]])
    kl = metrics.kl_divergence(np.log(p), np.log(q))
    hand = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)  # 0.5108...
    assert kl[0] == pytest.approx(hand, rel=1e-12)
    # KL is not symmetric
    assert metrics.kl_divergence(np.log(q), np.log(p))[0] == pytest.approx(
        0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5), rel=1e-12)


def test_kl_zero_probability_terms_vanish() -> None:
    with np.errstate(divide="ignore"):
        lp = np.log(np.array([[1.0, 0.0]]))
    lq = np.log(np.array([[0.5, 0.5]]))
    assert metrics.kl_divergence(lp, lq)[0] == pytest.approx(math.log(2))


def test_top1_agreement() -> None:
    cand = np.log(np.array([[0.1, 0.7, 0.2], [0.6, 0.3, 0.1], [0.2, 0.2, 0.6]]))
    np.testing.assert_array_equal(metrics.top1_agreement(np.array([1, 1, 2]), cand),
                                  [True, False, True])


def test_nll_and_perplexity() -> None:
    v = 50
    lp = metrics.log_softmax(np.zeros((7, v)))  # uniform: perplexity is the vocabulary size
    nll = metrics.nll(lp, np.arange(7))
    np.testing.assert_allclose(nll, math.log(v))
    assert metrics.perplexity(nll) == pytest.approx(v)
    lp2 = np.log(np.array([[0.5, 0.25, 0.25], [0.5, 0.25, 0.25]]))
    assert metrics.perplexity(metrics.nll(lp2, np.array([0, 1]))) == pytest.approx(
        math.exp((math.log(2) + math.log(4)) / 2))


def test_p99() -> None:
    assert metrics.p99(np.arange(101.0)) == pytest.approx(99.0)


@pytest.mark.parametrize("scale", [1.0, 4.0, 12.0])
def test_logprob_storage_is_near_exact(scale: float) -> None:
    """The uint16 cache storage: KL(stored || exact) far below any candidate's KL."""
    rng = np.random.default_rng(1)
    lp = metrics.log_softmax(rng.standard_t(3, size=(16, 49152)) * scale)
    codes, lo, sc = encode_logprobs(lp)
    assert codes.dtype == np.uint16
    back = decode_logprobs(codes, lo, sc)
    assert metrics.kl_divergence(back, lp).max() < 1e-6
    lq = metrics.log_softmax(np.log(np.exp(lp) + 1e-5))  # a nearby "candidate"
    exact, stored = metrics.kl_divergence(lp, lq), metrics.kl_divergence(back, lq)
    assert abs(stored.mean() / exact.mean() - 1) < 1e-3


def test_bootstrap_interval_covers_the_mean_and_narrows_with_more_windows() -> None:
    from advisor.measure.quality.metrics import bootstrap_ci

    rng = np.random.default_rng(0)
    few, many = rng.gamma(2.0, 0.01, 4), rng.gamma(2.0, 0.01, 64)
    for v in (few, many):
        lo, hi = bootstrap_ci(v)
        assert lo < v.mean() < hi
    assert np.diff(bootstrap_ci(many))[0] < np.diff(bootstrap_ci(few))[0]
    assert bootstrap_ci([0.3]) == (0.3, 0.3)  # one window: no spread to resample
    assert bootstrap_ci(few, seed=1) == bootstrap_ci(few, seed=1)


def test_a_paired_comparison_resolves_a_consistent_gain_that_unpaired_noise_would_hide() -> None:
    from advisor.measure.quality.metrics import paired_comparison

    rng = np.random.default_rng(1)
    preset = rng.uniform(0.05, 0.5, 10)  # windows differ far more than the two candidates
    pick = preset * 0.9
    v = paired_comparison(pick, preset)
    assert v["resolved"] and v["difference"] < 0 and v["difference_ci95"][1] < 0
    assert v["ratio"] == pytest.approx(0.9) and v["ratio_ci95"][0] <= 0.9 <= v["ratio_ci95"][1]
    noise = paired_comparison(preset + rng.normal(0, 0.05, 10), preset)
    assert not noise["resolved"] and noise["difference_ci95"][0] < 0 < noise["difference_ci95"][1]
    assert not paired_comparison([0.1], [0.2])["resolved"]  # one window never resolves
    with pytest.raises(ValueError, match="equal"):
        paired_comparison([0.1, 0.2], [0.1])
