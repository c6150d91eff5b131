"""Every registered backend, parametrised from the registry: quantize a small plan, load it back in
the backend's runtime, get logits and a greedy decode, write serving files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from advisor.artifact.serving import Serving
from advisor.modelspec import ModelSpec
from advisor.plan import QuantPlan
from advisor.probe.catalogue import load_target
from advisor.space.named import plan_for_format
from backends import get_backend, names, registry
from backends.base import Backend, QuantizeOptions, Runner, Support

pytestmark = pytest.mark.slow
PROMPT = "The river valley was quiet in the early morning, and the"
FAST = {"calib_windows": 2, "iters": 4}


def _case(name: str, embedded: ModelSpec, tmp_path: Path) -> tuple[ModelSpec, QuantPlan]:
    """The model and a cheap plan each backend is tested with."""
    if name == "gguf":
        return embedded, plan_for_format(embedded, "Q8_0")
    schemes = registry.schemes_of(name)
    if not schemes:
        pytest.fail(f"backend {name!r} declares no format in backends/__init__.py")
    from advisor.inspect import inspect_model
    from tests.backends.hf_tiny import embedded_tokenizer_dir, tiny_with_tokenizer

    # a tiny model with the embedded tokenizer: the HF runners tokenize, calibrating ones read text
    model_dir, _ = tiny_with_tokenizer(tmp_path, embedded_tokenizer_dir())
    spec = inspect_model(str(model_dir))
    return spec, plan_for_format(spec, schemes[0], backend=name)


@pytest.mark.parametrize("name", names())
def test_backend_conformance(name: str, embedded_spec: ModelSpec, tmp_path: Path) -> None:
    backend = get_backend(name)
    assert isinstance(backend, Backend)
    assert backend.name == name
    support = backend.available()
    assert isinstance(support, Support)
    if not support:
        pytest.skip(f"{name}: {support.reason}")
    assert isinstance(backend.serves_on(load_target("x86-server")), Support)

    spec, plan = _case(name, embedded_spec, tmp_path)
    out = tmp_path / "artifact"
    # the mechanics, not the quality: 2 calibration windows, 4 AutoRound iterations
    written = backend.quantize(spec, plan, out, QuantizeOptions(threads=2, extra=FAST))
    assert isinstance(written, QuantPlan) and written.backend == name
    assert set(plan.tensor_formats) <= set(written.tensor_formats)

    runner = backend.load(out, n_ctx=256, threads=2)
    try:
        assert isinstance(runner, Runner)
        tokens = runner.tokenize(PROMPT)
        assert 5 < len(tokens) < 64
        logits = runner.logits(tokens)
        assert logits.shape == (len(tokens), spec.vocab_size)
        assert logits.dtype == np.float32 and np.isfinite(logits).all()
        again = runner.logits(tokens)  # evaluated from an empty cache each time
        np.testing.assert_allclose(again, logits, rtol=1e-4, atol=1e-4)
        new, times = runner.generate(tokens, 3)
        assert len(new) == 3 and len(times) == 3
        assert all(0 <= t for t in times) and times == sorted(times)
        assert new[0] == int(np.argmax(logits[-1]))  # greedy
    finally:
        runner.close()

    files = backend.serve_files(out, written, load_target("x86-server"), Serving(256))
    assert files and all(isinstance(v, str) and v for v in files.values())
