"""Latency predictions calibrated on published measurements (llama-bench scoreboards, vLLM
benchmark results), each row cited in profiles/measurements, and on this host's own benches."""

from advisor.calibration.fit import (
    ClassFit,
    Coefficients,
    Residual,
    fits,
    lookup,
    runtime_class,
    validation,
)
from advisor.calibration.observations import (
    MODELS,
    ModelDims,
    Observation,
    device_class,
    peak_key,
    prefill_peak,
)

__all__ = ["MODELS", "ClassFit", "Coefficients", "Observation", "Residual", "device_class",
           "ModelDims", "fits", "lookup", "peak_key", "prefill_peak", "runtime_class", "validation"]
