"""Quality of a candidate: KL(ref || cand), top-1 agreement and perplexity on the cached windows."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np

from advisor.errors import AdvisorError
from advisor.figures import Figure, Origin
from advisor.measure.quality import metrics
from advisor.measure.quality.cache import ROW_CHUNK, RefCache
from advisor.measurement import (
    FRACTION,
    NATS,
    PERPLEXITY,
    SECONDS,
    QualityResult,
    measured,
)
from backends.base import Runner

log = logging.getLogger(__name__)


def measure_quality(candidate: Runner, ref: RefCache,
                    on_progress: Callable[[int, int], None] | None = None) -> QualityResult:
    """Feed the reference's windows to `candidate` and compare its next-token distributions.

    The candidate runner stays open (the caller owns it); its context must hold
    `ref.config.n_ctx` tokens.
    """
    cfg = ref.config
    first = cfg.first_scored
    n_chunks = len(range(0, ref.n_scored, ROW_CHUNK))
    kl, agree, nll, per_window = [], [], [], []
    t0 = time.perf_counter()
    for w in range(ref.n_windows):
        logits = candidate.logits(ref.tokens[w].tolist())
        if logits.shape != (cfg.n_ctx, ref.vocab):
            raise AdvisorError(
                f"the candidate returned logits of shape {tuple(logits.shape)}; the reference "
                f"has ({cfg.n_ctx}, {ref.vocab})",
                "candidate and reference must share the tokenizer and vocabulary",
            )
        targets = ref.targets(w)
        for r0 in range(0, ref.n_scored, ROW_CHUNK):
            rows = slice(r0, min(r0 + ROW_CHUNK, ref.n_scored))
            lq = metrics.log_softmax(logits[first + rows.start:first + rows.stop])
            kl.append(metrics.kl_divergence(ref.logprobs(w, rows), lq))
            agree.append(metrics.top1_agreement(ref.top1[w, rows], lq))
            nll.append(metrics.nll(lq, targets[rows]))
        per_window.append(float(np.concatenate(kl[-n_chunks:]).mean()))
        if on_progress:
            on_progress(w + 1, ref.n_windows)
    seconds = time.perf_counter() - t0
    kl_all = np.concatenate(kl)
    result = QualityResult(
        mean_kl=Figure(float(kl_all.mean()), NATS, Origin.MEASURED,
                       ci95=metrics.bootstrap_ci(per_window) if len(per_window) > 1 else None),
        p99_kl=measured(metrics.p99(kl_all), NATS),
        top1_agreement=measured(float(np.concatenate(agree).mean()), FRACTION),
        perplexity=measured(metrics.perplexity(np.concatenate(nll)), PERPLEXITY),
        reference_perplexity=measured(metrics.perplexity(np.asarray(ref.nll)), PERPLEXITY),
        eval_seconds=measured(seconds, SECONDS),
        n_windows=ref.n_windows,
        n_tokens=int(kl_all.size),
        text_sha256=ref.text_sha256,
        reference=ref.reference,
        window=cfg.n_ctx,
        kl_windows=tuple(per_window),
    )
    log.info("quality: mean KL %.5f, p99 %.5f, top-1 %.3f, ppl %.3f (ref %.3f) in %.1f s",
             result.mean_kl.value, result.p99_kl.value, result.top1_agreement.value,
             result.perplexity.value, result.reference_perplexity.value, seconds)
    return result
