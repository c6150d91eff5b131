"""The CLI as a user meets it: real processes, exit codes, one-line errors, JSON on stdout."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def advisor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "advisor.cli", *args], capture_output=True,
                          text=True, timeout=300)


def test_inspect_json_is_pure_json() -> None:
    r = advisor("inspect", "--model", "smollm2-135m", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["n_params"] == 134_515_008 and d["source_quantization"] == "Q4_1"


def test_estimate_json_labels_every_figure_predicted() -> None:
    r = advisor("estimate", "--model", "smollm2-135m", "--format", "Q4_K_M", "--target",
                "rtx4090", "--json")
    assert r.returncode == 0, r.stderr
    est = json.loads(r.stdout)["estimate"]
    figures = [v for k, v in est.items() if isinstance(v, dict) and k != "device_memory"]
    assert len(figures) == 8 and {f["origin"] for f in figures} == {"predicted"}
    assert est["device_memory"]["origin"] == "datasheet"


@pytest.mark.parametrize(
    "args,needle",
    [
        (["inspect", "--model", "/no/such/model.gguf"], "neither a known alias"),
        (["inspect", "--model", "not-a-model-alias"], "neither a known alias"),
        (["inspect", "--model", "{junk}"], "not a GGUF file"),
        (["inspect", "--model", "{empty}"], "is empty"),
        (["inspect", "--model", "{pickle}"], "pickle"),
        (["probe", "--target", "no-such-gpu"], "rtx4090"),
        (["estimate", "--format", "Q9_K_XL"], "unknown format"),
        (["estimate", "--format", "Q4_K_M", "--target", "nope"], "advisor profiles"),
        (["estimate", "--format", "int4", "--group-size", "100"], "group size"),
        (["estimate", "--format", "Q4_0", "--batch", "0"], "concurrency"),
        (["estimate"], "--format"),
        (["frobnicate"], "invalid choice"),
        (["quantize", "--preset", "Q9_K", "--out", "{out}"], "unknown format"),
        (["quantize", "--out", "{out}"], "exactly one of --preset and --plan"),
        (["quantize", "--preset", "Q4_0", "--plan", "{plan}", "--out", "{out}"], "exactly one"),
        (["quantize", "--plan", "/no/plan.json", "--out", "{out}"], "does not exist"),
        (["quantize", "--plan", "{junk}", "--out", "{out}"], "not a valid plan"),
        (["quantize", "--plan", "{plan}", "--out", "{out}"], "lacks"),
        (["quantize", "--preset", "Q4_0", "--out", "{junk}"], "is a file"),
        (["quantize", "--preset", "Q4_0", "--out", "{full}"], "not an advisor artifact"),
        (["quantize", "--preset", "Q4_0", "--backend", "rtn", "--out", "{out}"], "--backend"),
        (["quantize", "--preset", "Q4_0", "--calib-text", "/no/text", "--out", "{out}"],
         "does not exist"),
        (["eval", "--artifact", "/no/such/dir"], "not a directory"),
        (["eval", "--artifact", "{full}"], "not a complete advisor artifact"),
        (["eval", "--artifact", "{full}", "--eval-text", "/no/text"], "does not exist"),
        (["bench", "--artifact", "{full}"], "not a complete advisor artifact"),
    ],
)
def test_bad_input_one_line_exit_2(tmp_path: Path, args: list[str], needle: str) -> None:
    files = {
        "{junk}": tmp_path / "junk.gguf",
        "{empty}": tmp_path / "empty.gguf",
        "{pickle}": tmp_path / "pytorch_model.bin",
        "{plan}": tmp_path / "plan.json",
        "{out}": tmp_path / "out",
        "{full}": tmp_path / "full",
    }
    files["{plan}"].write_text('{"backend": "gguf", "tensor_formats": {"blk.99.x": "Q4_K"}}')
    files["{full}"].mkdir()
    (files["{full}"] / "notes.txt").write_text("not an artifact")
    files["{junk}"].write_bytes(b"not a model at all" * 10)
    files["{empty}"].write_bytes(b"")
    files["{pickle}"].write_bytes(b"\x80\x04")
    r = advisor(*[str(files.get(a, a)) for a in args])
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], r.stderr
