from __future__ import annotations

from pathlib import Path

import pytest

from advisor.errors import BadInput
from advisor.inspect import inspect_model
from advisor.modelspec import ModelSpec, Role, SourceFormat
from tests.conftest import tiny_hf_model


def test_embedded_model_exact_counts(embedded_gguf: Path) -> None:
    spec = inspect_model("smollm2-135m")
    assert spec.format is SourceFormat.GGUF
    assert spec.architecture == "llama"
    assert spec.n_params == 134_515_008
    assert spec.n_layers == 30 and spec.hidden_size == 576 and spec.intermediate_size == 1536
    assert (spec.n_heads, spec.n_kv_heads, spec.head_dim) == (9, 3, 64)
    assert spec.vocab_size == 49152
    assert spec.tied_embeddings
    assert spec.source_quantization == "Q4_1"
    roles = {t.role for t in spec.tensors}
    assert Role.LM_HEAD not in roles and Role.EMBEDDING in roles
    per_role = spec.role_counts()
    # 30 layers x 7 projections, plus 61 norms and one embedding.
    assert sum(1 for t in spec.tensors if t.role is Role.NORM) == 61
    assert per_role["embedding"] == 49152 * 576
    assert spec.tensor("blk.0.attn_k.weight").shape == (192, 576)
    # the header alone: tensor bytes plus metadata equal the file size (up to alignment)
    size = embedded_gguf.stat().st_size
    assert 0 <= size - spec.metadata_bytes - spec.source_bytes < 32 * len(spec.tensors)


def test_spec_round_trips(embedded_gguf: Path) -> None:
    spec = inspect_model(str(embedded_gguf))
    again = ModelSpec.from_dict(spec.to_dict())
    assert again == spec


@pytest.mark.parametrize("arch,tie", [("llama", False), ("llama", True), ("qwen2", False),
                                      ("mistral", False)])
def test_tiny_hf_exact_counts(tmp_path: Path, arch: str, tie: bool) -> None:
    d, model = tiny_hf_model(tmp_path, arch, tie=tie)
    spec = inspect_model(str(d))
    assert spec.format is SourceFormat.HF
    assert spec.n_params == sum(p.numel() for p in model.parameters())
    assert spec.tied_embeddings == tie
    assert spec.n_layers == 2 and spec.n_kv_heads == 2 and spec.head_dim == 16
    by_role = {t.role for t in spec.tensors}
    assert {Role.ATTN_Q, Role.ATTN_K, Role.ATTN_V, Role.ATTN_O, Role.MLP_GATE, Role.MLP_UP,
            Role.MLP_DOWN, Role.NORM, Role.EMBEDDING} <= by_role
    assert (Role.LM_HEAD in by_role) == (not tie)
    q = spec.tensor("blk.1.attn_q.weight")
    assert q.name == "model.layers.1.self_attn.q_proj.weight" and q.layer == 1
    assert q.shape == (64, 64) and q.dtype == "F32"
    assert spec.source_quantization is None
    if arch == "qwen2":  # q/k/v biases are kept, not quantized
        assert spec.tensor("blk.0.attn_q.bias").role is Role.OTHER


def _write(p: Path, data: bytes) -> Path:
    p.write_bytes(data)
    return p


def test_bad_inputs(tmp_path: Path, embedded_gguf: Path) -> None:
    cases = {
        "missing": tmp_path / "nope.gguf",
        "alias": "no-such-model",
        "empty": _write(tmp_path / "empty.gguf", b""),
        "random": _write(tmp_path / "random.gguf", bytes(range(256)) * 8),
        "truncated": _write(tmp_path / "trunc.gguf", embedded_gguf.read_bytes()[:4096]),
        "pickle": _write(tmp_path / "model.bin", b"\x80\x04junk"),
        "no-weights": tmp_path,
    }
    for name, value in cases.items():
        with pytest.raises(BadInput) as e:
            inspect_model(str(value))
        assert "\n" not in e.value.one_line(), name


def test_bad_hf_dirs(tmp_path: Path) -> None:
    d, _ = tiny_hf_model(tmp_path)
    cfg = (d / "config.json").read_text()
    (d / "config.json").write_text(cfg.replace("LlamaForCausalLM", "FancyNewModel"))
    with pytest.raises(BadInput, match="unsupported architecture"):
        inspect_model(str(d))
    (d / "config.json").write_text(cfg.replace('"hidden_size"', '"hidden_sizes"'))
    with pytest.raises(BadInput, match="hidden_size"):
        inspect_model(str(d))
    (d / "config.json").write_text("{not json")
    with pytest.raises(BadInput, match="not valid JSON"):
        inspect_model(str(d))
    (d / "config.json").write_text(cfg)
    st = next(d.glob("*.safetensors"))
    st.write_bytes(b"\xff" * 8 + b"{}")
    with pytest.raises(BadInput, match="safetensors"):
        inspect_model(str(d))


def test_corrupt_gguf_headers_only_raise_bad_input(tmp_path: Path, embedded_gguf: Path) -> None:
    """Truncations and byte flips anywhere in the header end in BadInput, never a crash."""
    import random

    from advisor.inspect.gguf_header import read_header

    head = embedded_gguf.read_bytes()[: read_header(embedded_gguf).data_offset + 4096]
    rng = random.Random(0)
    p = tmp_path / "bad.gguf"
    for i in range(60):
        data = bytearray(head)
        if i % 2:
            data = data[: rng.randrange(4, len(data))]
        else:
            for _ in range(4):
                data[rng.randrange(4, 4096)] = rng.randrange(256)
        p.write_bytes(bytes(data))
        try:
            inspect_model(str(p))
        except BadInput:
            pass


def _cache_repo(cache: Path, repo_id: str, files: dict[str, Path]) -> Path:
    """A repository laid out as huggingface_hub's cache keeps it (refs/main -> a snapshot)."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snap = repo / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    for name, src in files.items():
        (snap / name).symlink_to(src)
    return snap


def test_a_hugging_face_id_resolves_from_the_local_cache_only(tmp_path: Path,
                                                              embedded_gguf: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    d, _ = tiny_hf_model(tmp_path / "src", "llama")
    cache = tmp_path / "hub"
    _cache_repo(cache, "acme/tiny", {f.name: f for f in d.iterdir()})
    _cache_repo(cache, "acme/tiny-gguf", {"tiny.Q4_1.gguf": embedded_gguf})
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}

    def inspect(model: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "advisor.cli", "inspect", "--model", model,
                               "--json"], capture_output=True, text=True, env=env, timeout=120)

    hf = inspect("acme/tiny")
    assert hf.returncode == 0, hf.stderr
    assert json.loads(hf.stdout)["format"] == "hf"
    gg = inspect("acme/tiny-gguf")
    assert gg.returncode == 0 and json.loads(gg.stdout)["architecture"] == "llama"
    missing = inspect("acme/not-there")
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1
    assert str(cache) in missing.stderr and "nothing is downloaded" in missing.stderr
