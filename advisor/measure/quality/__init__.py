"""Quality measurement shared by every backend: the same reference, text, windows and metrics.

    ref = reference_logprobs(backends.gguf.f16_reference(spec), load_text(), WindowConfig())
    result = measure_quality(candidate_runner, ref)
"""

from __future__ import annotations

from advisor.measure.quality.cache import RefCache, cache_root, file_identity
from advisor.measure.quality.reference import reference_logprobs
from advisor.measure.quality.score import measure_quality
from advisor.measurement import QualityResult
from advisor.textdata import WindowConfig, load_text, make_windows, text_sha256

__all__ = [
    "QualityResult", "RefCache", "WindowConfig", "cache_root", "file_identity",
    "load_text", "make_windows", "measure_quality",
    "reference_logprobs", "text_sha256",
]
