"""Quality metrics on log-probabilities: pure numpy, float64, one row per scored position."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Float64 log-probabilities of the last axis."""
    x = np.asarray(logits, dtype=np.float64)
    m = np.max(x, axis=-1, keepdims=True)
    shifted = x - m
    return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))


def kl_divergence(ref_logprobs: np.ndarray, cand_logprobs: np.ndarray) -> np.ndarray:
    """KL(ref || cand) in nats per row: sum_v p(v) (log p(v) - log q(v)).

    Entries where p = 0 contribute 0 (the limit of p log p), whatever q is.
    """
    lp = np.asarray(ref_logprobs, dtype=np.float64)
    lq = np.asarray(cand_logprobs, dtype=np.float64)
    if lp.shape != lq.shape:
        raise ValueError(f"log-prob shapes differ: reference {lp.shape}, candidate {lq.shape}")
    p = np.exp(lp)
    with np.errstate(invalid="ignore"):
        terms = np.where(p > 0, p * (lp - lq), 0.0)
    kl: np.ndarray = terms.sum(axis=-1)
    # Rounding can leave -1e-17 for identical rows; KL is non-negative.
    return np.maximum(kl, 0.0)


def top1_agreement(ref_top1: np.ndarray, cand_logprobs: np.ndarray) -> np.ndarray:
    """Boolean per row: the candidate's most likely token is the reference's."""
    agree: np.ndarray = np.argmax(cand_logprobs, axis=-1) == np.asarray(ref_top1)
    return agree


def nll(logprobs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Negative log-likelihood of the actual next token per row."""
    rows = np.arange(logprobs.shape[0])
    out: np.ndarray = -np.asarray(logprobs, dtype=np.float64)[rows, np.asarray(targets)]
    return out


def perplexity(nll_values: np.ndarray) -> float:
    """exp(mean NLL): the perplexity over all scored tokens."""
    return float(np.exp(np.mean(np.asarray(nll_values, dtype=np.float64))))


def p99(values: np.ndarray) -> float:
    """99th percentile (linear interpolation, numpy's default)."""
    return float(np.percentile(np.asarray(values, dtype=np.float64), 99))


# Error bars over windows. The windows are the sampling unit: tokens of one window are strongly
# correlated, so a bootstrap over tokens would claim a precision the text does not have. Windows
# hold the same number of scored tokens, so the mean of window means is the mean over tokens.
BOOTSTRAP_RESAMPLES = 4000
CI_LEVEL = 0.95


def _resampled_means(values: np.ndarray, seed: int) -> np.ndarray:
    """Means of BOOTSTRAP_RESAMPLES resamples (with replacement) of the rows of `values`;
    `values` is (windows,) or (windows, k), resampled together along the first axis."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, values.shape[0], size=(BOOTSTRAP_RESAMPLES, values.shape[0]))
    out: np.ndarray = values[idx].mean(axis=1)
    return out


def _interval(samples: np.ndarray) -> tuple[float, float]:
    tail = (1 - CI_LEVEL) / 2 * 100
    lo, hi = np.percentile(samples, [tail, 100 - tail])
    return float(lo), float(hi)


def bootstrap_ci(window_means: np.ndarray | Sequence[float], seed: int = 0
                 ) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the mean over windows; (mean, mean) for one window
    (no spread to resample: callers report such an interval as unresolved)."""
    v = np.asarray(window_means, dtype=np.float64)
    if v.size == 0:
        raise ValueError("bootstrap_ci of no windows")
    if v.size == 1:
        return float(v[0]), float(v[0])
    return _interval(_resampled_means(v, seed))


def paired_comparison(a: np.ndarray | Sequence[float], b: np.ndarray | Sequence[float],
                      seed: int = 0) -> dict[str, float | int | bool | list[float]]:
    """`a` against `b` measured on the same windows (per-window mean KL): the difference of the
    means a - b and the ratio mean(a)/mean(b), each with a 95% paired-bootstrap interval (the
    same resampled windows for both), and whether the difference is resolved (its interval
    excludes zero)."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or x.size == 0:
        raise ValueError(f"paired_comparison needs two equal, non-empty window series; got "
                         f"{x.shape} and {y.shape}")
    diff, ratio = float(x.mean() - y.mean()), float(x.mean() / y.mean()) if y.mean() else \
        float("inf")
    if x.size == 1:
        d_ci, r_ci = (diff, diff), (ratio, ratio)
    else:
        means = _resampled_means(np.stack([x, y], axis=1), seed)
        d_ci = _interval(means[:, 0] - means[:, 1])
        with np.errstate(divide="ignore", invalid="ignore"):
            r_ci = _interval(means[:, 0] / means[:, 1])
    resolved = x.size > 1 and (d_ci[0] > 0 or d_ci[1] < 0)
    return {"n_windows": int(x.size), "difference": diff, "difference_ci95": list(d_ci),
            "ratio": ratio, "ratio_ci95": list(r_ci), "resolved": bool(resolved)}
