"""Per-tensor quantization sensitivity: the KL cost of each candidate type of each tensor."""

from __future__ import annotations

from advisor.sensitivity.gguf import gguf_sensitivity
from advisor.sensitivity.measure import imatrix_digest, measure_sensitivity, sensitivity_table
from advisor.sensitivity.table import NATS, SensitivityConfig, SensitivityTable

__all__ = ["NATS", "SensitivityConfig", "SensitivityTable", "gguf_sensitivity",
           "imatrix_digest",
           "measure_sensitivity", "sensitivity_table"]
