from __future__ import annotations

from pathlib import Path

import pytest

from advisor.errors import BadInput
from advisor.estimate import Workload, estimate
from advisor.figures import Origin
from advisor.inspect import inspect_model
from advisor.modelspec import ModelSpec
from advisor.probe import load_target
from advisor.space.named import canonical_format, plan_for_format


@pytest.fixture(scope="module")
def spec() -> ModelSpec:
    return inspect_model("smollm2-135m")


def test_q4_k_m_file_within_2_percent_of_llama_cpp(spec: ModelSpec) -> None:
    est = estimate(spec, plan_for_format(spec, "Q4_K_M"), load_target("rtx4090"))
    # 105,454,144 bytes: the Q4_K_M file llama.cpp's quantizer writes for the embedded model.
    assert abs(est.file_size.value / 105_454_144 - 1) < 0.02


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["Q2_K", "Q4_0", "Q4_K_M", "Q6_K", "Q8_0"])
def test_file_size_matches_real_quantizer(spec: ModelSpec, preset: str,
                                          embedded_quants: dict[str, Path]) -> None:
    est = estimate(spec, plan_for_format(spec, preset), load_target("rtx4090"))
    real = embedded_quants[preset].stat().st_size
    # exact: same header as the source, every tensor's bytes and alignment known
    assert est.file_size.value == real, (preset, est.file_size.value, real)


def test_every_figure_is_predicted(spec: ModelSpec) -> None:
    est = estimate(spec, plan_for_format(spec, "Q8_0"), load_target("h100-sxm"))
    for key in ("weights", "kv_cache", "overhead", "total_memory", "file_size", "ttft",
                "per_token", "request_latency"):
        assert getattr(est, key).origin is Origin.PREDICTED


def test_kv_cache_formula(spec: ModelSpec) -> None:
    wl = Workload(prompt_tokens=1000, new_tokens=24, concurrency=4, context=4096)
    est = estimate(spec, plan_for_format(spec, "Q8_0"), load_target("a100-80g"), wl)
    # 2 (K and V) x 30 layers x 3 kv heads x 64 dims x 2 bytes x 4096 tokens x 4 sequences
    assert est.kv_cache.value == 2 * 30 * 3 * 64 * 2 * 4096 * 4


def test_roofline_orders_formats_and_devices(spec: ModelSpec) -> None:
    h100, rpi = load_target("h100-sxm"), load_target("rpi5")
    q4, f16 = plan_for_format(spec, "Q4_K_M"), plan_for_format(spec, "F16")
    # decode is bandwidth bound: fewer bytes, faster tokens; more bandwidth, faster tokens
    assert estimate(spec, q4, rpi).per_token.value < estimate(spec, f16, rpi).per_token.value
    assert estimate(spec, q4, h100).per_token.value < estimate(spec, q4, rpi).per_token.value
    assert estimate(spec, q4, h100).ttft.value < estimate(spec, q4, rpi).ttft.value
    # Q8_0 weights: 34 bytes per 32 values = 8.5 bits per weight
    assert estimate(spec, plan_for_format(spec, "Q8_0"), h100).bits_per_weight == \
        pytest.approx(8.5, abs=0.01)


def test_hf_schemes(spec: ModelSpec) -> None:
    hw = load_target("rtx4090")
    w4 = estimate(spec, plan_for_format(spec, "int4", group_size=128), hw)
    w8 = estimate(spec, plan_for_format(spec, "int8", group_size=128), hw)
    fp8 = estimate(spec, plan_for_format(spec, "fp8"), hw)
    assert w4.runtime == "vllm"
    assert w4.weights.value < w8.weights.value
    # the embedding stays 16-bit: 28.3M x 2 bytes alone
    assert w4.weights.value > 28_311_552 * 2
    assert fp8.weights.value < w8.weights.value * 1.05
    assert fp8.ttft.value < w4.ttft.value  # FP8 matmuls run on the 4090's FP8 units


def test_memory_does_not_fit() -> None:
    spec = inspect_model("smollm2-135m")
    wl = Workload(prompt_tokens=512, new_tokens=512, concurrency=512, context=8192)
    est = estimate(spec, plan_for_format(spec, "F16"), load_target("rpi5"), wl)
    assert not est.fits


@pytest.mark.parametrize("name,expected", [("q4_k_m", "Q4_K_M"), ("int4", "W4A16"),
                                           ("FP8", "W8A8-FP8"), ("q8_0", "Q8_0"), ("f16", "F16")])
def test_format_names(name: str, expected: str) -> None:
    assert canonical_format(name) == expected


def test_unknown_format() -> None:
    with pytest.raises(BadInput, match="Q4_K_M"):
        canonical_format("Q9_XL")


def test_workload_validation() -> None:
    with pytest.raises(ValueError, match="concurrency"):
        Workload(concurrency=0)
