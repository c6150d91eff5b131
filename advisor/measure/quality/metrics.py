"""Quality metrics on log-probabilities: pure numpy, float64, one row per scored position."""

from __future__ import annotations

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
