"""The llama.cpp/CPU class: which published CPU rows it is fitted to, the rates it reads, and the
estimate of a catalogue CPU target that uses it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import profiles
from advisor.calibration import cpu, fits, validation
from advisor.calibration.observations import GIB
from advisor.estimate import Workload, estimate
from advisor.inspect import inspect_model
from advisor.probe import get_hardware
from advisor.probe.catalogue import profile_from_entry
from advisor.space.named import plan_for_format

EPYC = {"device": "epyc-9654", "variant": "", "threads": "96", "backend": "CPU",
        "model": "llama 7B", "quant": "Q4_0", "size_gib": "3.56", "params": "6.74 B",
        "test": "tg128", "tokens_per_s": "40", "source_url": "https://example.org",
        "source_note": ""}


@pytest.mark.parametrize(("change", "reason"), [
    ({}, None),
    ({"threads": "48"}, "fewer threads"),
    ({"device": "no-such-cpu"}, "not in the catalogue"),
    ({"model": "qwen3moe 30B.A3B", "params": "30.53 B"}, "model is not listed"),
    ({"params": "7.00 B"}, "model is not listed"),
    ({"size_gib": ""}, "printed file size"),
    ({"test": "pp512", "size_gib": ""}, None),
    ({"test": "pg512,128"}, "ppN or tgN"),
    ({"backend": "CUDA"}, "not the CPU backend"),
])
def test_which_rows_are_fitted(change: dict[str, str], reason: str | None) -> None:
    why = cpu.usable({**EPYC, **change})
    assert (why is None) if reason is None else (why is not None and reason in why)


def test_a_hybrid_chip_counts_its_performance_cores() -> None:
    """An M4 Pro (10 performance + 4 efficiency cores) run on 10 threads is the whole chip's."""
    entry = profiles.load("m4-pro")
    assert cpu.whole_chip_threads(entry) == 10 < entry["host"]["physical_cores"]
    row = {**EPYC, "device": "m4-pro", "threads": "10", "model": "llama 1B", "params": "1.24 B"}
    assert cpu.usable(row) is None
    assert "fewer threads" in (cpu.usable({**row, "threads": "8"}) or "")


def test_rates_are_the_ones_a_cpu_target_gets() -> None:
    for name in ("epyc-9654", "rpi5", "m4-pro"):
        entry = profiles.load(name)
        bw, peaks = cpu.cpu_rates(entry)
        target = get_hardware(name, None).cpu
        assert target.memory_bandwidth is not None and bw == target.memory_bandwidth.value
        assert peaks == {k: f.value for k, f in target.peak_tflops.items()}
    # an Apple entry's top-level peaks are its GPU's: its CPU has the host block's, or none
    assert cpu.cpu_rates(profiles.load("m4-pro"))[1] == {"fp32": 1.44}
    assert cpu.cpu_rates(profiles.load("m4"))[1] == {}
    assert "no CPU fp32 peak" in (cpu.usable({**EPYC, "device": "m4", "threads": "4"}) or "")


def test_a_host_block_peak_is_the_cpus_and_predicted() -> None:
    entry = json.loads(json.dumps(profiles.load("m4-pro")))
    entry["host"]["peak_tflops"] = {"fp32": 1.5}
    entry["estimated"] = [*entry.get("estimated", ()), "host.peak_tflops"]
    fig = profile_from_entry(entry).cpu.peak_tflops["fp32"]
    assert fig.value == 1.5 and fig.origin.value == "predicted"
    assert profile_from_entry(entry).primary is not None  # the GPU keeps its own peaks


def test_held_out_bands_cover_four_rows_in_five() -> None:
    """A prediction times its class's band bounds the measured seconds of the rows its fit never
    saw four times in five (the band is measured / predicted, not the inverse)."""
    for (cls, test), f in fits().items():
        held = [r for r in validation()[test]
                if (f"llama.cpp/{r.obs.backend}" if r.obs.runtime == "llama.cpp"
                    else r.obs.runtime) == cls]
        if len(held) < 10:
            continue
        inside = [f.band[0] * r.predicted_s <= r.obs.seconds <= f.band[1] * r.predicted_s
                  for r in held]
        assert 0.7 <= float(np.mean(inside)) <= 0.9, (cls, test, float(np.mean(inside)))


def test_observations_turn_rows_into_work() -> None:
    obs = cpu.observations()
    assert obs and {o.backend for o in obs} == {"CPU"}
    rows = [r for r in profiles.measurements("llama.cpp-cpu") if cpu.usable(r) is None]
    assert len(obs) == len(rows)
    for o, row in zip(obs, rows, strict=True):
        dims = cpu.model_dims(row)
        assert dims is not None and o.device == row["device"]
        n = int(row["test"][2:])
        if o.test == "decode":  # a step reads less than the file (one embedding row) and more
            # than its decoder layers
            assert o.seconds == pytest.approx(1 / float(row["tokens_per_s"]))
            assert 0.5 * float(row["size_gib"]) * GIB < o.amount < 1.1 * float(
                row["size_gib"]) * GIB
            assert o.fixed_units == dims.layers and o.flops == dims.decode_flops() > 0
        else:
            assert o.seconds == pytest.approx(n / float(row["tokens_per_s"]))
            assert o.amount > 2 * 0.7 * dims.params * n and o.fixed_units == 0


def test_the_cpu_class_is_fitted_and_validated_leaving_devices_out() -> None:
    for test in ("decode", "prefill"):
        f = fits()[("llama.cpp/CPU", test)]
        assert len(f.devices) >= 3, f.devices
        assert f.loo_median_error is not None
        assert 0 < f.coefficients.efficiency <= 1.0 and f.band[0] < f.band[1]
        held = [r for r in validation()[test] if r.obs.backend == "CPU"]
        assert len(held) == f.rows
        assert float(np.median([abs(r.ratio - 1) for r in held])) == pytest.approx(
            f.loo_median_error)


def test_a_catalogue_cpu_target_is_predicted_from_the_cpu_class(tmp_path: Path) -> None:
    d = tmp_path / "llama-3-8b"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096,
        "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
        "num_key_value_heads": 8, "vocab_size": 128256, "max_position_embeddings": 8192,
        "torch_dtype": "bfloat16"}))
    spec = inspect_model(d, weights=False)
    plan = plan_for_format(spec, "Q4_K_M")
    est = estimate(spec, plan, get_hardware("epyc-9654", None), Workload(512, 128))
    assert any("llama.cpp/CPU fitted to" in a for a in est.assumptions)
    assert est.per_token.band is not None and est.ttft.band is not None
    f = fits()[("llama.cpp/CPU", "decode")]
    entry = profiles.load("epyc-9654")
    bw, peak = entry["memory_bandwidth_GBps"] * 1e9, entry["peak_tflops"]["fp32"] * 1e12
    assert est.features is not None and f.coefficients.compute_efficiency > 0
    expected = f.coefficients.seconds(est.features["decode_bytes"], bw, 32,
                                      est.features["decode_flops"], peak)
    assert est.per_token.value == pytest.approx(expected)
    # a bigger CPU (more bandwidth and FLOPs) is predicted faster; a smaller one slower
    assert estimate(spec, plan, get_hardware("rpi5", None), Workload(512, 128)
                    ).per_token.value > 10 * est.per_token.value
    # this host keeps its own calibration (kernel timings, benches): never the published class
    host = estimate(spec, plan, get_hardware(None, None), Workload(512, 128))
    assert not any("llama.cpp/CPU fitted to" in a for a in host.assumptions)
