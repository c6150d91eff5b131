from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from advisor.errors import AdvisorError, BadInput
from backends.base import Runner
from backends.gguf.backend import GgufRunner, gguf_file

pytestmark = pytest.mark.slow
pytest.importorskip("llama_cpp")


def test_runner_protocol_logits_and_generate(embedded_gguf: Path) -> None:
    r = GgufRunner(embedded_gguf, n_ctx=64, threads=2)
    try:
        assert isinstance(r, Runner)
        toks = r.tokenize("The lighthouse keeper climbed the stairs")
        assert 4 < len(toks) < 20 and r.bos_token is None  # SmolLM2 adds no BOS
        logits = r.logits(toks)
        assert logits.shape == (len(toks), 49152) and logits.dtype == np.float32
        np.testing.assert_array_equal(r.logits(toks), logits)  # each call from an empty cache
        new, times = r.generate(toks, 5)
        assert len(new) == len(times) == 5 and times == sorted(times) and times[0] > 0
        assert new[0] == int(np.argmax(logits[-1]))  # greedy
        with pytest.raises(AdvisorError):
            r.logits(list(range(65)))
    finally:
        r.close()


def test_gguf_file(tmp_path: Path, embedded_gguf: Path) -> None:
    assert gguf_file(embedded_gguf) == embedded_gguf
    (tmp_path / "model.gguf").write_bytes(b"")
    assert gguf_file(tmp_path) == tmp_path / "model.gguf"
    with pytest.raises(BadInput, match="does not exist"):
        gguf_file(tmp_path / "nope")
