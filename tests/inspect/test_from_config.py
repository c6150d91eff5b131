"""Plan before download: a directory with only config.json is sized from it (issue 17, item 6)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from advisor.errors import BadInput
from advisor.inspect import inspect_model, is_config_only
from advisor.inspect.from_config import config_tensors
from advisor.inspect.hf_source import HF_ARCHITECTURES
from tests.cli.test_cli import advisor, assert_one_line_exit_2
from tests.conftest import tiny_hf_model

TINY = dict(vocab_size=320, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
# Llama-3-70B's config.json, as published (the sizes only)
LLAMA3_70B = {"architectures": ["LlamaForCausalLM"], "model_type": "llama",
              "hidden_size": 8192, "intermediate_size": 28672, "num_hidden_layers": 80,
              "num_attention_heads": 64, "num_key_value_heads": 8, "vocab_size": 128256,
              "max_position_embeddings": 8192, "torch_dtype": "bfloat16",
              "tie_word_embeddings": False}


def _meta_model(hf_arch: str, cfg: dict[str, object]) -> dict[str, tuple[int, ...]]:
    """transformers' own model of `hf_arch` on the meta device: names and shapes, no memory."""
    import torch
    import transformers

    config = transformers.AutoConfig.for_model(cfg["model_type"], **{
        k: v for k, v in cfg.items() if k not in ("model_type", "architectures")})
    with torch.device("meta"):
        model = getattr(transformers, hf_arch)(config)
    return {n: tuple(p.shape) for n, p in model.named_parameters(remove_duplicate=True)}


CASES = [(hf, arch, extra) for hf, arch in sorted(HF_ARCHITECTURES.items())
         for extra in ({}, {"tie_word_embeddings": True}, {"tie_word_embeddings": False})]
CASES += [("LlamaForCausalLM", "llama", {"attention_bias": True, "mlp_bias": True}),
          ("Qwen3ForCausalLM", "qwen3", {"head_dim": 32, "attention_bias": True})]


@pytest.mark.parametrize("hf_arch,arch,extra", CASES)
def test_tensors_are_those_transformers_builds(hf_arch: str, arch: str,
                                               extra: dict[str, object]) -> None:
    model_type = {"MistralForCausalLM": "mistral"}.get(hf_arch, arch)
    cfg = {"model_type": model_type, **TINY, **extra}
    assert dict(config_tensors(cfg, arch)) == _meta_model(hf_arch, cfg)


def _config_only(tmp_path: Path, cfg: dict[str, object]) -> Path:
    d = tmp_path / "config-only"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(cfg))
    return d


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_config_only_spec_equals_the_downloaded_one(tmp_path: Path, arch: str) -> None:
    full_dir, _ = tiny_hf_model(tmp_path, arch, tie=arch == "qwen2")
    full = inspect_model(full_dir)
    cfg = json.loads((full_dir / "config.json").read_text())
    bare = inspect_model(_config_only(tmp_path, cfg), weights=False)
    assert is_config_only(bare) and not is_config_only(full)
    key = lambda s: sorted((t.canonical, t.role, t.layer, t.shape, t.dtype, t.nbytes)  # noqa: E731
                           for t in s.tensors)
    assert key(bare) == key(full)
    assert (bare.n_params, bare.source_bytes, bare.tied_embeddings) == \
        (full.n_params, full.source_bytes, full.tied_embeddings)


def test_commands_that_need_weights_refuse_a_config_only_directory(tmp_path: Path) -> None:
    d = _config_only(tmp_path, LLAMA3_70B)
    with pytest.raises(BadInput, match="no weights"):
        inspect_model(d)
    for cmd in (["quantize", "--preset", "Q4_K_M", "--out", str(tmp_path / "q")],
                ["recommend", "--max-size", "40G", "--out", str(tmp_path / "r")]):
        assert_one_line_exit_2(advisor(cmd[0], "--model", str(d), *cmd[1:]),
                               "holds config.json but no weights")
    assert not (tmp_path / "q").exists() and not (tmp_path / "r").exists()


def test_inspect_and_estimate_a_70b_config(tmp_path: Path) -> None:
    d = _config_only(tmp_path, LLAMA3_70B)
    r = advisor("inspect", "--model", str(d), "--json")
    assert r.returncode == 0, r.stderr
    spec = json.loads(r.stdout)
    n_params = sum(_prod(x["shape"]) for x in spec["tensors"])
    assert n_params == 70_553_706_496  # Llama-3-70B's published parameter count
    assert spec["extra"]["weights"] == "config-only"
    r = advisor("estimate", "--model", str(d), "--target", "h100-sxm", "--format", "Q4_K_M",
                "--json")
    assert r.returncode == 0, r.stderr
    est = json.loads(r.stdout)["estimate"]
    # llama.cpp's Q4_K_M of Llama-3-70B is 42.5 GB (39.6 GiB); ~4.8 bits per weight
    assert 39.0 * 2**30 < est["weights"]["value"] < 40.5 * 2**30
    assert est["weights"]["origin"] == "predicted"


def _prod(shape: list[int]) -> int:
    out = 1
    for s in shape:
        out *= s
    return out
