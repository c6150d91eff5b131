"""SensitivityTable: values, labels, serialisation and the cache key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from advisor.figures import Origin
from advisor.sensitivity.table import (
    SensitivityConfig,
    SensitivityTable,
    cache_key,
    load_cached,
    save_cached,
)
from tests.search.synth import synthetic_table


def test_config_validation() -> None:
    assert SensitivityConfig().scored_from == 16
    assert SensitivityConfig(n_ctx=64, first_scored=3).scored_from == 3
    with pytest.raises(ValueError, match="n_ctx"):
        SensitivityConfig(n_ctx=2)
    with pytest.raises(ValueError, match="n_windows"):
        SensitivityConfig(n_windows=0)
    with pytest.raises(ValueError, match="first_scored"):
        SensitivityConfig(n_ctx=8, first_scored=8)
    for bad in (1, -1):
        with pytest.raises(ValueError, match="anchors"):
            SensitivityConfig(anchors=bad)
    with pytest.raises(ValueError, match="anchors must be 0"):
        SensitivityConfig(anchors=4, exhaustive=True)
    cfg = SensitivityConfig(anchors=6)
    assert SensitivityConfig.from_dict(cfg.to_dict()) == cfg
    old = {k: v for k, v in SensitivityConfig().to_dict().items() if k != "anchors"}
    assert SensitivityConfig.from_dict(old).anchors == 0  # a table cached before anchors


def test_anchor_layers_are_evenly_spaced_with_both_ends() -> None:
    from advisor.sensitivity.measure import anchor_layers

    assert anchor_layers(list(range(30)), 8) == {0, 4, 8, 12, 17, 21, 25, 29}
    assert anchor_layers(list(range(30)), 2) == {0, 29}
    assert anchor_layers(list(range(5)), 8) == set(range(5))  # fewer layers: every one
    assert anchor_layers(list(range(5)), 0) == set(range(5))


def test_surrogate_and_labels() -> None:
    table = synthetic_table()
    free = {t.name: t.types[-1] for t in table.space.free}
    want = sum(table.costs[n][g] for n, g in table.space.complete(free).items())
    assert table.surrogate(free) == pytest.approx(want)
    fig = table.surrogate_figure(free)
    assert fig.origin is Origin.PREDICTED and fig.unit == "nats"
    name = table.space.free[0].name
    assert table.figure(name, table.space.free[0].types[0]).origin is Origin.MEASURED
    partial = SensitivityTable(table.space, table.costs,
                               {n: v[:1] for n, v in table.measured.items()}, table.config,
                               "m", "t", None, 0, 0, 0.0)
    assert partial.figure(name, table.space.free[0].types[1]).origin is Origin.PREDICTED


def test_missing_costs_are_refused() -> None:
    table = synthetic_table()
    costs = dict(table.costs)
    costs.pop(table.space.free[0].name)
    with pytest.raises(ValueError, match="lacks the cost"):
        SensitivityTable(table.space, costs, {}, table.config, "m", "t", None, 0, 0, 0.0)


def test_round_trip_and_cache_file(tmp_path: Path) -> None:
    table = synthetic_table()
    again = SensitivityTable.from_dict(json.loads(json.dumps(table.to_dict())))
    assert again == table
    path = tmp_path / "sensitivity" / "k.json"
    save_cached(path, table)
    assert load_cached(path) == table
    path.write_text("{not json")
    assert load_cached(path) is None
    assert load_cached(tmp_path / "absent.json") is None


def test_cache_key_covers_every_input() -> None:
    table = synthetic_table()
    space, cfg = table.space, SensitivityConfig()
    base = cache_key("model", "text", space, None, cfg)
    assert cache_key("model", "text", space, None, SensitivityConfig()) == base
    others = [
        cache_key("model2", "text", space, None, cfg),
        cache_key("model", "text2", space, None, cfg),
        cache_key("model", "text", synthetic_table(n_layers=5).space, None, cfg),
        cache_key("model", "text", space, "imatrix-digest", cfg),
        cache_key("model", "text", space, None, SensitivityConfig(exhaustive=True)),
        cache_key("model", "text", space, None, SensitivityConfig(n_windows=3)),
    ]
    assert len({base, *others}) == len(others) + 1
