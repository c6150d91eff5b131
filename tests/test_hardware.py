from __future__ import annotations

import pytest

from advisor.hardware import (
    supports_fp8,
    supports_int4_weight_kernels,
    supports_int8_tensor_cores,
)
from advisor.probe import load_target


@pytest.mark.parametrize("target,int8,int4,fp8", [
    ("rtx3090", True, True, False),   # sm_86: Ampere, no FP8
    ("rtx4090", True, True, True),    # sm_89
    ("h100-sxm", True, True, True),   # sm_90
    ("a100-80g", True, True, False),  # sm_80
    ("mi300x", True, True, True),     # gfx942
    ("m3-max", False, True, False),   # Metal: no integer tensor cores, no FP8
    ("x86-server", False, False, False),  # CPU only: no accelerator
])
def test_capability_predicates(target: str, int8: bool, int4: bool, fp8: bool) -> None:
    hw = load_target(target)
    assert supports_int8_tensor_cores(hw) is int8
    assert supports_int4_weight_kernels(hw) is int4
    assert supports_fp8(hw) is fp8
