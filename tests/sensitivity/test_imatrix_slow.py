"""The importance matrix reaches the quantizer (slow: one 512-token imatrix chunk, ~20 s)."""

from __future__ import annotations

from pathlib import Path

import pytest

from advisor.errors import BadInput
from advisor.inspect import inspect_model
from advisor.sensitivity import SensitivityConfig, sensitivity_table
from advisor.sensitivity.measure import imatrix_digest
from advisor.space.choices import PlanSpace, gguf_plan_space

pytestmark = pytest.mark.slow
NAMES = ("blk.29.attn_v.weight", "blk.29.ffn_down.weight")


def _sub(space: PlanSpace) -> PlanSpace:
    return PlanSpace(space.model, space.menu, space.floor, space.imatrix,
                     tuple(space.choice(n) for n in NAMES))


def test_imatrix_weights_the_quantizer(embedded_gguf: Path, tmp_path: Path) -> None:
    from advisor.textdata import default_calibration_text
    from backends.gguf.imatrix import imatrix_for

    text = default_calibration_text()
    imatrix = imatrix_for(embedded_gguf, text[:2_700], threads=2, use_cache=False).values
    spec = inspect_model(embedded_gguf)
    with_im = _sub(gguf_plan_space(spec, imatrix=True))
    assert "IQ4_NL" in with_im.choice(NAMES[0]).types
    assert "IQ3_S" in with_im.choice(NAMES[1]).types
    cfg = SensitivityConfig(exhaustive=True)
    a = sensitivity_table(embedded_gguf, with_im, imatrix=imatrix, config=cfg, cache_dir=tmp_path)
    plain = _sub(gguf_plan_space(spec))
    b = sensitivity_table(embedded_gguf, plain, config=cfg, cache_dir=tmp_path)
    assert a.imatrix_sha256 == imatrix_digest(imatrix) and b.imatrix_sha256 is None
    assert len(list((tmp_path / "sensitivity").glob("*.json"))) == 2
    # Q4_0 uses importance weights, Q8_0 ignores them (ggml-quants.c quantize_q8_0)
    assert a.costs[NAMES[0]]["Q4_0"] != b.costs[NAMES[0]]["Q4_0"]
    assert a.costs[NAMES[0]]["Q8_0"] == pytest.approx(b.costs[NAMES[0]]["Q8_0"], rel=1e-4)
    with pytest.raises(BadInput, match="imatrix"):
        sensitivity_table(embedded_gguf, with_im, config=cfg, cache_dir=tmp_path)
