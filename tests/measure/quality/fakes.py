"""A deterministic in-memory Runner: logits are a fixed function of the window's tokens."""

from __future__ import annotations

import numpy as np


class FakeRunner:
    """Tokens are bytes of the UTF-8 text; logits[i] depend on tokens[: i + 1] and `seed`.

    `noise` perturbs the logits (a stand-in for quantization error); `calls` counts logits().
    """

    def __init__(self, vocab: int = 256, seed: int = 0, noise: float = 0.0,
                 bos_token: int | None = None) -> None:
        self.vocab = vocab
        self.seed = seed
        self.noise = noise
        self.bos_token = bos_token
        self.calls = 0
        self.closed = False
        rng = np.random.default_rng(seed)
        self._table = rng.normal(0.0, 3.0, size=(vocab, vocab)).astype(np.float32)
        self._noise = np.random.default_rng(seed + 1).normal(0.0, 1.0, size=(vocab, vocab))

    def tokenize(self, text: str) -> list[int]:
        return [b % self.vocab for b in text.encode("utf-8")]

    def logits(self, tokens: list[int]) -> np.ndarray:
        self.calls += 1
        t = np.asarray(tokens)
        out = self._table[t] + np.cumsum(np.ones(len(t)))[:, None] * 1e-3
        out = out + self.noise * self._noise[t]
        return out.astype(np.float32)

    def generate(self, tokens: list[int], max_new_tokens: int) -> tuple[list[int], list[float]]:
        out = [int(np.argmax(self._table[tokens[-1]]))] * max_new_tokens
        return out, [0.001 * (i + 1) for i in range(max_new_tokens)]

    def close(self) -> None:
        self.closed = True
