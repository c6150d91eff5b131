"""Reference cache and measure_quality on a deterministic fake runner (fast, no model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from advisor.errors import AdvisorError, BadInput
from advisor.measure.quality import (
    WindowConfig,
    cache_root,
    load_text,
    make_windows,
    measure_quality,
    metrics,
    reference_logprobs,
)
from tests.measure.quality.fakes import FakeRunner

TEXT = "The quick brown fox jumps over the lazy dog. " * 20  # 900 byte-tokens
CFG = WindowConfig(n_ctx=64, max_windows=5)


class Factory:
    def __init__(self, **kw: object) -> None:
        self.kw = kw
        self.made = 0

    def __call__(self) -> FakeRunner:
        self.made += 1
        return FakeRunner(**self.kw)  # type: ignore[arg-type]


def test_window_config_validates_and_round_trips() -> None:
    assert WindowConfig.from_dict(CFG.to_dict()) == CFG
    assert (CFG.first_scored, CFG.n_scored) == (32, 31)
    with pytest.raises(ValueError, match="n_ctx"):
        WindowConfig(n_ctx=2)
    with pytest.raises(ValueError, match="max_windows"):
        WindowConfig(max_windows=-1)


def test_make_windows() -> None:
    toks = list(range(200))
    w = make_windows(toks, WindowConfig(n_ctx=64))
    assert w.shape == (3, 64) and w.dtype == np.int32
    assert w[1, 0] == 64 and w[2, -1] == 191
    assert make_windows(toks, WindowConfig(n_ctx=64, max_windows=2)).shape == (2, 64)
    assert (make_windows(toks, WindowConfig(n_ctx=64), bos=7)[:, 0] == 7).all()


def test_too_short_text_names_the_needed_tokens(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="has 63 tokens; one window needs 64"):
        make_windows(list(range(63)), WindowConfig(n_ctx=64))
    with pytest.raises(BadInput, match="needs 64"):
        reference_logprobs(Factory(), "short text", CFG, identity="fake", cache_dir=tmp_path)
    with pytest.raises(BadInput, match="needs 64"):
        reference_logprobs(Factory(), "", CFG, identity="fake", cache_dir=tmp_path)


def test_missing_text_file() -> None:
    with pytest.raises(BadInput, match="does not exist"):
        load_text("/nonexistent/eval.txt")
    assert len(load_text()) > 10_000  # the project's default evaluation text


def test_cache_dir_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("QUANT_ADVISOR_CACHE", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"
    monkeypatch.delenv("QUANT_ADVISOR_CACHE")
    assert cache_root() == Path.home() / ".cache" / "quant-advisor"


def test_reference_computed_once_and_reused(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    monkeypatch.setenv("QUANT_ADVISOR_CACHE", str(tmp_path))
    factory = Factory()
    progress: list[tuple[int, int]] = []
    ref = reference_logprobs(factory, TEXT, CFG, identity="fake-0",
                             on_progress=lambda d, t: progress.append((d, t)))
    assert ref.computed and factory.made == 1
    assert progress == [(i, 5) for i in range(1, 6)]
    assert ref.path.parent == tmp_path / "quality-ref" and (ref.path / "meta.json").is_file()
    assert ref.tokens.shape == (5, 64) and ref.nll.shape == (5, 31) and ref.vocab == 256

    again = reference_logprobs(factory, TEXT, CFG, identity="fake-0")
    assert not again.computed and factory.made == 1  # read from disk, runner never loaded
    np.testing.assert_array_equal(again.tokens, ref.tokens)
    np.testing.assert_array_equal(again.logprobs(3), ref.logprobs(3))

    # Another text, window config or reference identity is another cache entry.
    reference_logprobs(factory, TEXT + "!", CFG, identity="fake-0")
    reference_logprobs(factory, TEXT, WindowConfig(n_ctx=64, max_windows=4), identity="fake-0")
    reference_logprobs(factory, TEXT, CFG, identity="fake-1")
    assert factory.made == 4


def test_factory_needs_identity(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="identity"):
        reference_logprobs(Factory(), TEXT, CFG, cache_dir=tmp_path)


def test_bos_starts_every_window(tmp_path: Path) -> None:
    ref = reference_logprobs(Factory(bos_token=1), TEXT, CFG, identity="bos", cache_dir=tmp_path)
    assert (ref.tokens[:, 0] == 1).all()


def test_measure_identical_candidate(tmp_path: Path) -> None:
    ref = reference_logprobs(Factory(), TEXT, CFG, identity="fake", cache_dir=tmp_path)
    q = measure_quality(FakeRunner(), ref)
    assert q.mean_kl.value < 1e-7 and q.p99_kl.value < 1e-7
    assert q.top1_agreement.value == 1.0
    assert q.perplexity.value == pytest.approx(q.reference_perplexity.value, rel=1e-9)
    assert (q.n_windows, q.n_tokens, q.window) == (5, 5 * 31, 64)
    assert q.mean_kl.origin.value == "measured"


@pytest.mark.parametrize("n_ctx", [64, 200])  # 200: 99 scored rows, more than one ROW_CHUNK
def test_measure_matches_direct_float64(tmp_path: Path, n_ctx: int) -> None:
    cfg = WindowConfig(n_ctx=n_ctx, max_windows=5)
    ref = reference_logprobs(Factory(), TEXT, cfg, identity="fake", cache_dir=tmp_path)
    cand = FakeRunner(noise=0.5)
    q = measure_quality(cand, ref)
    first, last = n_ctx // 2, n_ctx - 1
    kl, agree, nll, nll_ref = [], [], [], []
    exact = FakeRunner()
    for w in ref.tokens:
        toks = w.tolist()
        lp = metrics.log_softmax(exact.logits(toks)[first:last])
        lq = metrics.log_softmax(cand.logits(toks)[first:last])
        kl.append(metrics.kl_divergence(lp, lq))
        agree.append(lp.argmax(-1) == lq.argmax(-1))
        nll.append(metrics.nll(lq, w[first + 1:]))
        nll_ref.append(metrics.nll(lp, w[first + 1:]))
    kl_all = np.concatenate(kl)
    assert q.n_tokens == kl_all.size == ref.n_windows * (n_ctx - 1 - first)
    assert kl_all.mean() > 0.01
    assert q.mean_kl.value == pytest.approx(kl_all.mean(), rel=1e-5)
    assert q.p99_kl.value == pytest.approx(np.percentile(kl_all, 99), rel=1e-4)
    assert q.top1_agreement.value == pytest.approx(np.concatenate(agree).mean())
    assert q.perplexity.value == pytest.approx(np.exp(np.concatenate(nll).mean()), rel=1e-12)
    assert q.reference_perplexity.value == pytest.approx(np.exp(np.concatenate(nll_ref).mean()),
                                                         rel=1e-12)


def test_vocab_mismatch(tmp_path: Path) -> None:
    ref = reference_logprobs(Factory(), TEXT, CFG, identity="fake", cache_dir=tmp_path)
    with pytest.raises(AdvisorError, match="vocabulary"):
        measure_quality(FakeRunner(vocab=300), ref)


def test_failed_reference_leaves_no_cache(tmp_path: Path) -> None:
    class Broken(FakeRunner):
        def logits(self, tokens: list[int]) -> np.ndarray:
            if self.calls == 2:
                raise RuntimeError("decode failed")
            return super().logits(tokens)

    with pytest.raises(RuntimeError):
        reference_logprobs(Broken, TEXT, CFG, identity="broken", cache_dir=tmp_path)
    assert list((tmp_path / "quality-ref").iterdir()) == []
