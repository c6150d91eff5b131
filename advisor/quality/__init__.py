"""Quality measurement shared by every backend: the same reference, text, windows and metrics.

    ref = reference_logprobs(make_f16_reference(src_gguf), load_text(), WindowConfig())
    result = measure_quality(candidate_runner, ref)
"""

from __future__ import annotations

from advisor.measurement import QualityResult
from advisor.quality.cache import RefCache, cache_root, file_identity
from advisor.quality.measure import measure_quality
from advisor.quality.reference import make_f16_reference, reference_logprobs
from advisor.quality.windows import WindowConfig, load_text, make_windows, text_sha256

__all__ = [
    "QualityResult", "RefCache", "WindowConfig", "cache_root", "file_identity",
    "load_text", "make_f16_reference", "make_windows", "measure_quality",
    "reference_logprobs", "text_sha256",
]
