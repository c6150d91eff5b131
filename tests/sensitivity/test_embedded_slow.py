"""The sensitivity table of the embedded SmolLM2-135M (slow: ~1-1.5 min on 2 cores)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from advisor import formats
from advisor.modelspec import Role
from advisor.sensitivity import SensitivityConfig, SensitivityTable, sensitivity_table
from advisor.sensitivity.measure import measure_sensitivity
from advisor.space.choices import PlanSpace
from advisor.textdata import default_calibration_text

pytestmark = pytest.mark.slow


def test_every_candidate_has_a_cost_and_its_bytes(embedded_sensitivity: SensitivityTable) -> None:
    table = embedded_sensitivity
    assert table.n_tokens == 64 and table.n_scored == 32
    for t in table.space.tensors:
        costs = table.costs[t.name]
        assert set(costs) == set(t.types)
        assert all(np.isfinite(c) and c >= 0 for c in costs.values())
        for g, b in zip(t.types, t.nbytes):
            assert b == formats.tensor_bytes(g, t.shape)
        if t.role is Role.NORM:
            assert costs == {"F32": 0.0}
        elif t.free:
            assert table.measured[t.name] == t.types[:1]  # the anchor
            # 8.5 bits per weight cost far less than the cheapest candidate
            assert costs["Q8_0"] < 0.2 * costs[t.types[0]]
    emb = table.figure("token_embd.weight", "Q8_0")
    # the source stores token_embd in Q8_0: re-quantizing its values to Q8_0 changes nothing
    assert emb.origin.value == "measured" and emb.value == 0.0
    assert table.figure("blk.3.attn_q.weight", "Q8_0").origin.value == "predicted"


def test_cached_table_is_reused(embedded_sensitivity: SensitivityTable,
                                tmp_path_factory: pytest.TempPathFactory) -> None:
    cache = tmp_path_factory.getbasetemp() / "sensitivity-cache"
    t0 = time.perf_counter()
    again = sensitivity_table("smollm2-135m", cache_dir=cache)
    assert time.perf_counter() - t0 < 15  # header read + JSON, no measurement
    assert again.to_dict() == embedded_sensitivity.to_dict()
    files = list((cache / "sensitivity").glob("*.json"))
    assert len(files) == 1


def test_exhaustive_measurement_agrees_with_the_anchor(
        embedded_sensitivity: SensitivityTable, embedded_gguf: Path) -> None:
    """A few tensors with every candidate measured: the anchor is the same measurement, and
    the scaled costs keep the measured order of magnitude."""
    names = ("blk.29.attn_v.weight", "blk.29.ffn_down.weight", "blk.28.attn_q.weight")
    full = embedded_sensitivity.space
    sub = PlanSpace(full.model, full.menu, full.floor, full.imatrix,
                    tuple(full.choice(n) for n in names))
    exh = measure_sensitivity(embedded_gguf, sub, default_calibration_text(),
                              config=SensitivityConfig(exhaustive=True))
    for n in names:
        t = full.choice(n)
        assert exh.measured[n] == t.types
        anchor = t.types[0]
        assert embedded_sensitivity.costs[n][anchor] == pytest.approx(exh.costs[n][anchor],
                                                                      rel=1e-4)
        for g in t.types[1:]:
            ratio = embedded_sensitivity.costs[n][g] / exh.costs[n][g]
            assert 1 / 4 < ratio < 4, (n, g, ratio)


def test_anchored_table_scales_the_other_layers_from_the_anchors(
        embedded_sensitivity: SensitivityTable, embedded_gguf: Path) -> None:
    """anchors=8 measures 8 of the 30 layers end to end; the others are their output error times
    their role's gain. The anchors are the every-layer table's own measurements, and the whole
    table ranks the candidates as that one does (Spearman 0.98 measured; 0.9 required)."""
    from advisor.sensitivity.measure import anchor_layers

    full = embedded_sensitivity
    cfg = SensitivityConfig(anchors=8)
    table = measure_sensitivity(embedded_gguf, full.space, default_calibration_text(),
                                config=cfg)
    anchored = anchor_layers(list(range(30)), 8)
    assert table.extra["anchored_layers"] == sorted(anchored)
    ref_costs, costs = [], []
    for t in full.space.tensors:
        if not t.free:
            continue
        if t.layer is None or t.layer in anchored:
            assert table.measured[t.name] == t.types[:1]
            assert table.costs[t.name] == pytest.approx(full.costs[t.name], rel=1e-5)
        else:
            assert table.measured[t.name] == ()
            assert table.figure(t.name, t.types[0]).origin.value == "predicted"
        for g in t.types:
            ref_costs.append(full.costs[t.name][g])
            costs.append(table.costs[t.name][g])
    ranks = [np.argsort(np.argsort(np.log(np.maximum(c, 1e-12)))) for c in (ref_costs, costs)]
    assert np.corrcoef(*ranks)[0, 1] > 0.9
