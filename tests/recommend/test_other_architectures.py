"""`advisor recommend` on GGUFs of architectures other than the embedded model's llama.

Only one trained model can be installed here (SmolLM2-135M, llama), so issue 4's quality bar at
other architectures (0.7x Q3_K_M's held-out KL) cannot be measured. These tests run the whole
command on random-weight models of other architectures, converted to GGUF by the tool's own
converter, and check what holds whatever the weights: the sensitivity stage loads the model
(transformers' GGUF loader: q/k norms, biases, tied heads, soft-capping), every 2-D weight gets a
type, the pick fits the byte budget, and it is never worse than the best stock preset that fits.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from advisor.inspect import inspect_model
from backends.gguf.convert import convert_hf_to_gguf
from tests.backends.test_gguf_convert import DATA, build_tiny
from tests.recommend.test_recommend_cli import FAST, advisor

# hidden 256 and head_dim 64, so k-quant blocks (256 wide) fit every row, as in real models
SHAPE = dict(hidden_size=256, intermediate_size=512, num_attention_heads=4, num_key_value_heads=2,
             head_dim=64, max_position_embeddings=2048)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["qwen2", "qwen3", "gemma2"])
def test_recommend_at_q3_k_m_size_on_other_architectures(tmp_path: Path, arch: str) -> None:
    # gemma2: the default 0.25 init saturates its logit soft-cap (top-1 probability 0.96, every
    # KL ~0); 0.05 leaves a spread like a trained model's (0.22 measured)
    extra = {"query_pre_attn_scalar": 64, "initializer_range": 0.05} if arch == "gemma2" else {}
    build_tiny(arch, tmp_path / "hf", DATA.read_text(encoding="utf-8")[:8000], **SHAPE, **extra)
    src = convert_hf_to_gguf(inspect_model(tmp_path / "hf"), tmp_path / "gguf")

    q = advisor("-q", "quantize", "--model", str(src), "--preset", "Q3_K_M", "--no-imatrix",
                "--out", str(tmp_path / "q3"), "--json")
    assert q.returncode == 0, q.stderr
    budget = (tmp_path / "q3" / "model.gguf").stat().st_size

    r = advisor("recommend", "--model", str(src), "--max-size", str(budget), *FAST,
                "--out", str(tmp_path / "pick"), "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["model"]["architecture"] == arch
    rows = {c["label"]: c for c in rep["candidates"]}
    pick = rows[rep["pick"]["label"]]
    assert (tmp_path / "pick" / "model.gguf").stat().st_size == pick["size_measured"] <= budget
    fitting = [c for c in rep["candidates"] if c["kind"] == "preset" and not c["violations"]]
    assert "Q3_K_M" in {c["label"] for c in fitting}
    assert 1e-3 < pick["kl_measured"] <= min(c["kl_measured"] for c in fitting)

    # every 2-D weight of the source was planned, and the pick's file holds the planned types
    import gguf

    weights = {t.name for t in gguf.GGUFReader(str(src)).tensors if len(t.shape) == 2}
    planned = json.loads((tmp_path / pick["directory"] / "report.json").read_text())["plan"]
    written = {t.name: t.tensor_type.name
               for t in gguf.GGUFReader(str(tmp_path / "pick" / "model.gguf")).tensors}
    assert weights <= set(planned["tensor_formats"]) and weights <= set(written)
    assert all(written[w] == planned["tensor_formats"][w] for w in weights)
    assert any(written[w] not in ("F16", "F32") for w in weights)


@pytest.mark.slow
def test_an_architecture_without_a_torch_loader_exits_2_in_one_line(tmp_path: Path) -> None:
    # transformers has no GGUF loader for Gemma (1), so the sensitivity stage cannot run
    build_tiny("gemma", tmp_path / "hf", DATA.read_text(encoding="utf-8")[:8000], **SHAPE)
    src = convert_hf_to_gguf(inspect_model(tmp_path / "hf"), tmp_path / "gguf")
    r = advisor("-q", "recommend", "--model", str(src), "--max-size", "1G", *FAST,
                "--out", str(tmp_path / "pick"))
    assert r.returncode == 2, r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith("advisor: error:") and "gemma" in line and "--preset" in line
    assert "Traceback" not in r.stderr and not (tmp_path / "pick").exists()
