"""This host's llama.cpp kernel timings per GGML type (advisor.calibration.kernels): a synthetic
model per type timed by llama.cpp itself, kept per host and shape, summed over a plan's tensors
and scaled by the host's benches."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from advisor.calibration import host, kernels
from advisor.calibration.kernels import Shape, shape_for
from advisor.estimate import kernel_features
from advisor.measure.latency.kernels import ensure
from advisor.plan import QuantPlan
from tests.formats.synth import synthetic_spec

TINY = {"hidden": 256.0, "ffn": 512.0, "n_heads": 4.0, "n_kv_heads": 2.0, "head_dim": 64.0}


def test_shapes_round_to_whole_blocks_keep_gqa_groups_and_are_capped() -> None:
    smollm2 = {"hidden": 576, "ffn": 1536, "n_heads": 9, "n_kv_heads": 3, "head_dim": 64}
    assert shape_for(smollm2) == Shape(768, 1536, 12, 4, 64)
    llama8b = {"hidden": 4096, "ffn": 14336, "n_heads": 32, "n_kv_heads": 8, "head_dim": 128}
    assert shape_for(llama8b) == Shape(1024, 3584, 8, 2, 128)  # a quarter of the width
    assert shape_for({**smollm2, "n_kv_heads": 2}) is None  # 9 heads do not split in 2 groups
    assert shape_for({"hidden": 576}) is None
    assert Shape(768, 1536, 12, 4, 64).layer_weights == 768 * (2 * 768 + 2 * 256) + 3 * 768 * 1536


def test_features_count_every_matmul_weight_once_by_type() -> None:
    for tied in (False, True):
        spec = synthetic_spec(n_layers=3, hidden=256, ffn=512, vocab=300, tied=tied)
        formats = {t.canonical: ("Q4_K" if t.layer is not None else "Q6_K")
                   for t in spec.tensors if len(t.shape) == 2}
        formats["blk.0.ffn_down.weight"] = "Q8_0"
        plan = QuantPlan("gguf", formats)
        f = kernel_features(spec, plan, 512, 1000.0)
        layers = sum(t.n_params for t in spec.tensors if t.layer is not None and len(t.shape) == 2)
        assert f["w:Q4_K"] + f["w:Q8_0"] == layers and f["w:Q8_0"] == 512 * 256
        assert f["head:Q6_K"] == 300 * 256  # the tied embedding is the head; else the head only
        assert not any(k.startswith("w:F") for k in f)
        assert (f["hidden"], f["ffn"], f["prompt_tokens"]) == (256, 512, 512)


def test_timed_types_are_kept_per_host_and_shape_and_summed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("llama_cpp")
    monkeypatch.setenv("QUANT_ADVISOR_CACHE", str(tmp_path))
    f = {**TINY, "w:Q8_0": 1e6, "w:Q4_0": 2e6, "head:F16": 5e5, "prompt_tokens": 512.0,
         "attention_units": 1e4}
    assert kernels.untimed(f, host.host_key()) == {"Q8_0", "Q4_0", "F16", "attention"}
    assert kernels.seconds(f, host.host_key()) == {}  # nothing timed: nothing predicted
    assert ensure(f, host.host_key(), threads=1)
    assert kernels.untimed(f, host.host_key()) == set()
    assert not ensure(f, host.host_key(), threads=1)  # kept, not timed again
    entry = json.loads((tmp_path / kernels.STORE).read_text())[host.host_key()][
        shape_for(TINY).key]
    assert set(entry["decode"]) == set(entry["prefill"]) == {"Q8_0", "Q4_0", "F16"}
    assert all(v > 0 for p in ("decode", "prefill") for v in entry[p].values())
    dec, pre = entry["decode"], entry["prefill"]
    got = kernels.seconds(f, host.host_key())
    head = 5e5 * dec["F16"]
    assert got["decode"] == pytest.approx(1e6 * dec["Q8_0"] + 2e6 * dec["Q4_0"] + head
                                          + 1e4 * entry["attention"])
    assert got["prefill"] == pytest.approx(512 * (1e6 * pre["Q8_0"] + 2e6 * pre["Q4_0"]) + head)
    # one more type: only it is timed, the others' figures stay
    more = {**f, "w:Q6_K": 1e6}
    assert kernels.untimed(more, host.host_key()) == {"Q6_K"}
    assert ensure(more, host.host_key(), threads=1)
    again = json.loads((tmp_path / kernels.STORE).read_text())[host.host_key()][
        shape_for(TINY).key]
    assert again["decode"]["Q8_0"] == dec["Q8_0"] and "Q6_K" in again["decode"]
    assert kernels.seconds(f, "another host") == {}


def test_benches_scale_the_kernel_sum(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUANT_ADVISOR_CACHE", str(tmp_path))
    key, shape = host.host_key(), shape_for(TINY)
    table = {"decode": {"Q4_0": 2e-11, "Q8_0": 4e-11}, "prefill": {"Q4_0": 1e-12, "Q8_0": 2e-12},
             "attention": 1e-8}
    (tmp_path / kernels.STORE).write_text(json.dumps({key: {shape.key: table}}))

    def feats(q4: float, q8: float) -> dict[str, float]:
        nbytes = 0.5625 * q4 + 1.0625 * q8  # what the benches' own fit reads
        return {**TINY, "w:Q4_0": q4, "w:Q8_0": q8, "prompt_tokens": 512.0,
                "attention_units": 1e5, "layers": 4.0, "decode_flops": 2 * (q4 + q8),
                "decode_bytes": nbytes, "prefill_flops": 1024 * (q4 + q8), "prefill_bytes": nbytes}

    new = feats(3e8, 1e8)
    base = kernels.seconds(new, key)
    got = host.predict(new)  # before any bench: the kernel sum alone
    assert got["decode"] == (base["decode"], None, 0, "kernels")
    # three benches measured at 1.2x, 1.3x and 1.5x their kernel sums
    for name, (q4, q8), ratio in (("a", (1e8, 1e8), 1.2), ("b", (2e8, 0), 1.3),
                                  ("c", (0, 2e8), 1.5)):
        s = kernels.seconds(feats(q4, q8), key)
        host.add(name, feats(q4, q8), ratio * s["decode"], ratio * s["prefill"])
    seconds, band, n, how = host.predict(new)["decode"]
    assert (n, how) == (3, "kernels") and seconds == pytest.approx(1.3 * base["decode"])
    # band: each bench against the median of the other two, 1.2/1.4 .. 1.5/1.25
    assert band == pytest.approx((seconds * 1.2 / 1.4, seconds * 1.5 / 1.25))
    # an artifact's own bench never predicts it
    assert host.predict(new, exclude="b")["decode"][0] == pytest.approx(1.35 * base["decode"])
    # types the host never timed: the benches' own fit, as before
    other = {**new, "w:IQ2_XS": 1e8}
    assert host.predict(other)["decode"][3] == "benches"


def test_a_torn_or_edited_store_costs_the_calibration_not_the_estimate(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUANT_ADVISOR_CACHE", str(tmp_path))
    key, shape = host.host_key(), shape_for(TINY)
    f = {**TINY, "w:Q8_0": 1e6, "prompt_tokens": 512.0, "attention_units": 1e4}
    for junk in ('{"torn', "[1, 2]", json.dumps({key: [1]}), json.dumps({key: {shape.key: 3}}),
                 json.dumps({key: {shape.key: {"decode": {"Q8_0": "fast"}, "attention": None}}})):
        (tmp_path / kernels.STORE).write_text(junk)
        assert kernels.seconds(f, key) == {}
        assert kernels.untimed(f, key) == {"Q8_0", "attention"}
    # a good timing beside junk is kept, the junk dropped when the store is written again
    (tmp_path / kernels.STORE).write_text(json.dumps(
        {key: {shape.key: {"decode": {"Q8_0": 4e-11, "Q4_0": "x"}, "attention": 1e-8}}}))
    assert kernels.untimed(f, key) == set()
    kernels.save(key, shape, {"decode": {"Q6_K": 5e-11}, "prefill": {}})
    kept = json.loads((tmp_path / kernels.STORE).read_text())[key][shape.key]
    assert kept["decode"] == {"Q8_0": 4e-11, "Q6_K": 5e-11} and kept["attention"] == 1e-8
