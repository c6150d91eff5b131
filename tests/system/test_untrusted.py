"""Untrusted inputs: model code is never executed, pickles are refused, nothing is written
outside --out, and no environment variable or token reaches an artifact."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from advisor.errors import BadInput
from advisor.inspect import inspect_model

REPO = Path(__file__).resolve().parents[2]
SOURCES = [p for d in ("advisor", "backends", "kernels", "profiles")
           for p in (REPO / d).rglob("*.py")]


def test_no_code_path_executes_what_it_loads() -> None:
    """No trust_remote_code=True, no pickle loading (torch.load, pickle.load, allow_pickle=True)
    anywhere in the product's source."""
    assert len(SOURCES) > 50
    banned = re.compile(r"trust_remote_code\s*=\s*True|torch\.load\(|pickle\.loads?\(|"
                        r"allow_pickle\s*=\s*True|import pickle|weights_only\s*=\s*False")
    hits = [f"{p.relative_to(REPO)}:{i}: {line.strip()}" for p in SOURCES
            for i, line in enumerate(p.read_text().splitlines(), 1) if banned.search(line)]
    assert not hits, hits


@pytest.mark.parametrize("name", ["pytorch_model.bin", "model.pt", "model.pth", "last.ckpt",
                                  "weights.pkl", "MODEL.BIN"])
def test_pickle_checkpoints_are_refused(tmp_path: Path, name: str) -> None:
    import pickle

    path = tmp_path / name
    # a real pickle whose loading would run code: refused before anything opens it
    path.write_bytes(pickle.dumps(os.getcwd))
    with pytest.raises(BadInput, match="pickle checkpoint.*safetensors"):
        inspect_model(path)


def test_hf_dir_with_only_pickles_is_refused(tmp_path: Path) -> None:
    from tests.fuzz.builders import tiny_llama_config

    (tmp_path / "config.json").write_text(json.dumps(tiny_llama_config()))
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04")
    with pytest.raises(BadInput, match="safetensors"):
        inspect_model(tmp_path)


@pytest.mark.slow
def test_artifact_stays_in_out_and_holds_no_secrets(tmp_path: Path, embedded_gguf: Path) -> None:
    """A plan whose label tries to climb out of --out, and a token in the environment."""
    token = "hf_FAKEtoken0123456789abcdefSECRET"
    names = [t["name"] for t in json.loads(subprocess.run(
        [sys.executable, "-m", "advisor.cli", "inspect", "--tensors", "--json"],
        capture_output=True, text=True, check=True).stdout)["tensors"]]
    plan = tmp_path / "plans" / "plan.json"
    plan.parent.mkdir()
    plan.write_text(json.dumps({"backend": "gguf", "label": "../../escaped",
                                "tensor_formats": {n: "Q8_0" for n in names
                                                   if n.endswith("ffn_down.weight")}}))
    work = tmp_path / "work"
    work.mkdir()
    out = work / "art"
    env = {**os.environ, "HF_TOKEN": token, "HUGGING_FACE_HUB_TOKEN": token,
           "ADVISOR_TEST_SECRET": token}
    r = subprocess.run([sys.executable, "-m", "advisor.cli", "quantize", "--plan", str(plan),
                        "--no-imatrix", "--out", str(out), "--json"], capture_output=True,
                       text=True, timeout=600, env=env, cwd=work)
    assert r.returncode == 0, r.stderr
    # everything written is under --out (the plan's directory holds only the plan)
    assert sorted(p.name for p in work.iterdir()) == ["art"]
    assert sorted(p.name for p in plan.parent.iterdir()) == ["plan.json"]
    assert not list(tmp_path.glob("escaped*")) and not list(tmp_path.parent.glob("escaped*"))
    for f in out.rglob("*"):
        if f.is_file() and f.suffix != ".gguf":
            text = f.read_text(errors="replace")
            assert token not in text and "HF_TOKEN" not in text, f.name
    assert token not in r.stdout and token not in r.stderr
    report = json.loads((out / "report.json").read_text())
    assert "HF_TOKEN" not in json.dumps(report["provenance"])
