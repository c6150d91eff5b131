"""Evaluation text, window configuration and windowing: the same tokens for every candidate.

Windows follow llama.cpp's `llama-perplexity --kl-divergence`: consecutive, non-overlapping
chunks of `n_ctx` tokens, each evaluated from an empty cache, each starting with BOS when the
model uses one, and only the second half scored (positions n_ctx/2 .. n_ctx-2 predicting the next
token), so that every scored token sees at least n_ctx/2 tokens of context.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from advisor.errors import BadInput
from advisor.textdata import load_text, text_sha256  # noqa: F401 - re-exported

__all__ = ["WindowConfig", "load_text", "make_windows", "text_sha256"]

SCHEMA_VERSION = 1

@dataclass(frozen=True)
class WindowConfig:
    """How the evaluation text is cut: window length and how many windows (0 = all)."""

    n_ctx: int = 512
    max_windows: int = 0
    version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if not isinstance(self.n_ctx, int) or self.n_ctx < 4:
            raise ValueError(f"WindowConfig.n_ctx={self.n_ctx!r}; expected an integer >= 4")
        if not isinstance(self.max_windows, int) or self.max_windows < 0:
            raise ValueError(f"WindowConfig.max_windows={self.max_windows!r}; "
                             "expected an integer >= 0 (0 = all windows)")

    @property
    def first_scored(self) -> int:
        """Position of the first scored logit."""
        return self.n_ctx // 2

    @property
    def n_scored(self) -> int:
        """Scored positions per window: first_scored .. n_ctx-2 (the last has no next token)."""
        return self.n_ctx - 1 - self.first_scored

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WindowConfig:
        if d.get("version", SCHEMA_VERSION) != SCHEMA_VERSION:
            raise ValueError(f"WindowConfig version {d.get('version')} != {SCHEMA_VERSION}")
        return cls(n_ctx=int(d["n_ctx"]), max_windows=int(d.get("max_windows", 0)))


def make_windows(tokens: list[int], cfg: WindowConfig, bos: int | None = None) -> np.ndarray:
    """Cut `tokens` into int32 windows [n_windows, n_ctx]; BadInput when not one window fits."""
    n = len(tokens) // cfg.n_ctx
    if n == 0:
        raise BadInput(
            f"the evaluation text has {len(tokens)} tokens; one window needs {cfg.n_ctx}",
            f"give a text of at least {cfg.n_ctx} tokens or a smaller window",
        )
    if cfg.max_windows:
        n = min(n, cfg.max_windows)
    windows = np.asarray(tokens[: n * cfg.n_ctx], dtype=np.int32).reshape(n, cfg.n_ctx).copy()
    if bos is not None:
        windows[:, 0] = bos  # as llama-perplexity does for every chunk
    return windows
