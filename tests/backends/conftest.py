"""Session fixtures of the backend tests: the embedded model, a short calibration text, a
session-private imatrix cache, and quantized files made once per session."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from advisor.modelspec import ModelSpec
from advisor.plan import QuantPlan
from advisor.textdata import default_calibration_text
from tests.conftest import cache_at

# One 512-token imatrix chunk (the text is ~4.3 characters per token): enough to move the
# numbers, cheap enough for two slow cores.
CALIB_CHARS = 2_700
THREADS = 2


@pytest.fixture(scope="session")
def embedded_spec() -> ModelSpec:
    from advisor.inspect import inspect_model

    return inspect_model("smollm2-135m")


@pytest.fixture(scope="session")
def calib_text() -> str:
    return default_calibration_text()[:CALIB_CHARS]


@pytest.fixture(scope="session", autouse=True)
def imatrix_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Importance matrices of this session go to a private cache (not ~/.cache)."""
    with cache_at(tmp_path_factory.mktemp("backends-cache")) as path:
        yield path


Quantized = Callable[[QuantPlan, bool], tuple[Path, QuantPlan]]


@pytest.fixture(scope="session")
def quantized(embedded_spec: ModelSpec, calib_text: str,
              tmp_path_factory: pytest.TempPathFactory) -> Quantized:
    """quantized(plan, imatrix) -> (artifact dir, plan as written); each plan written once."""
    from backends import get_backend
    from backends.base import QuantizeOptions

    done: dict[tuple[str, bool], tuple[Path, QuantPlan]] = {}
    root = tmp_path_factory.mktemp("quantized")

    def make(plan: QuantPlan, imatrix: bool) -> tuple[Path, QuantPlan]:
        key = (plan.digest(), imatrix)
        if key not in done:
            out = root / f"{plan.label or 'plan'}-{plan.digest()[:8]}-{int(imatrix)}"
            opts = QuantizeOptions(calib_text=calib_text, imatrix=imatrix, threads=THREADS)
            written = get_backend("gguf").quantize(embedded_spec, plan, out, opts)
            done[key] = (out, written)
        return done[key]

    return make
