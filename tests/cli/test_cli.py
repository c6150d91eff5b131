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
    figures = [v for k, v in est.items()
               if isinstance(v, dict) and k not in ("device_memory", "workload", "features")]
    assert len(figures) == 8 and {f["origin"] for f in figures} == {"predicted"}
    assert est["device_memory"]["origin"] == "datasheet"
    # calibrated on published llama.cpp CUDA rows: every latency carries its held-out band
    for k in ("ttft", "per_token", "request_latency"):
        lo, hi = est[k]["band"]
        assert lo <= est[k]["value"] <= hi


# Every category of bad input the issue names: paths and aliases, files that are not models,
# lying GGUF and safetensors headers, broken config.json, unsupported tensor types, malformed
# sizes and durations, unknown presets/backends/targets, unwritable --out, short evaluation
# text, artifact directories that are not one, studies that do not exist. Each: exit 2, one
# line naming the problem, no traceback.
BAD_INPUT = [
    (["inspect", "--model", "/no/such/model.gguf"], "neither a known alias"),
    (["inspect", "--model", "not-a-model-alias"], "neither a known alias"),
    (["inspect", "--model", "{junk}"], "not a GGUF file"),
    (["inspect", "--model", "{empty}"], "is empty"),
    (["inspect", "--model", "{pickle}"], "pickle"),
    (["inspect", "--model", "{pickle_dir}"], "pickle checkpoints"),
    (["inspect", "--model", "{gguf_truncated}"], "runs past the end of the file"),
    (["inspect", "--model", "{gguf_tensor_count}"], "tensor count"),
    (["inspect", "--model", "{gguf_kv_count}"], "key/value count"),
    (["inspect", "--model", "{gguf_offset}"], "runs past the end of the file"),
    (["inspect", "--model", "{gguf_version}"], "GGUF version 99"),
    (["inspect", "--model", "{gguf_alignment}"], "alignment"),
    (["estimate", "--format", "Q4_0", "--model", "{gguf_type}"], "GGMLQuantizationType"),
    (["inspect", "--model", "{st_header_len}"], "not a readable safetensors file"),
    (["inspect", "--model", "{st_not_json}"], "invalid JSON"),
    (["inspect", "--model", "{st_offsets}"], "not a readable safetensors file"),
    (["inspect", "--model", "{st_dtype}"], "unknown variant `Q9`"),
    (["inspect", "--model", "{cfg_missing}"], "no valid 'hidden_size'"),
    (["inspect", "--model", "{cfg_arch}"], "unsupported architecture"),
    (["inspect", "--model", "{cfg_json}"], "config.json is not valid JSON"),
    (["probe", "--target", "rtx-4090x"], "did you mean rtx4090"),
    (["estimate", "--format", "Q9_K_XL"], "unknown format"),
    (["estimate", "--format", "Q4_K_M", "--target", "nope"], "advisor profiles"),
    (["estimate", "--format", "int4", "--group-size", "100"], "group size"),
    (["estimate", "--format", "Q4_0", "--batch", "0"], "concurrency"),
    (["estimate"], "--format"),
    (["frobnicate"], "invalid choice"),
    (["recommend", "--max-size", "24Gbb", "--out", "{out}"], "'24Gbb' is not a size"),
    (["recommend", "--vram=-3G", "--out", "{out}"], "'-3G' is not a size"),
    (["recommend", "--p95", "fast", "--out", "{out}"], "'fast' is not a duration"),
    (["recommend", "--p95", "0s", "--out", "{out}"], "must be longer than zero"),
    (["recommend", "--max-kld", "abc", "--out", "{out}"], "not a number"),
    (["recommend", "--max-size", "90MB", "--sensitivity-anchors", "1", "--out", "{out}"],
     "--sensitivity-anchors 1 must be 0"),
    (["recommend", "--max-size", "90MB", "--device", "tpu", "--out", "{out}"],
     "argument --device: invalid choice"),
    (["recommend", "--trials", "0", "--out", "{out}"], "--trials 0"),
    (["quantize", "--preset", "Q9_K", "--out", "{out}"], "unknown format"),
    (["quantize", "--out", "{out}"], "exactly one of --preset and --plan"),
    (["quantize", "--preset", "Q4_0", "--plan", "{plan}", "--out", "{out}"], "exactly one"),
    (["quantize", "--plan", "/no/plan.json", "--out", "{out}"], "does not exist"),
    (["quantize", "--plan", "{junk}", "--out", "{out}"], "not a valid plan"),
    (["quantize", "--plan", "{plan}", "--out", "{out}"], "lacks"),
    (["quantize", "--plan", "{plan_type}", "--out", "{out}"], "unknown GGML types Q9_Z"),
    (["quantize", "--preset", "Q4_0", "--out", "{junk}"], "is a file"),
    (["quantize", "--preset", "Q4_0", "--out", "{full}"], "not an advisor artifact"),
    (["quantize", "--preset", "Q4_0", "--out", "/dev/null/out"], "not a writable directory"),
    # /proc has no free blocks: the pre-flight check refuses before any work
    (["quantize", "--preset", "Q4_0", "--out", "/proc/advisor-out"], "not enough free disk"),
    (["quantize", "--preset", "Q4_0", "--backend", "rtn", "--out", "{out}"], "--backend"),
    (["quantize", "--preset", "Q4_0", "--calib-text", "/no/text", "--out", "{out}"],
     "does not exist"),
    (["eval", "--artifact", "/no/such/dir"], "not a directory"),
    (["eval", "--artifact", "{full}"], "not a complete advisor artifact"),
    (["eval", "--artifact", "{full}", "--eval-text", "/no/text"], "does not exist"),
    (["-q", "eval", "--artifact", "{fake_artifact}", "--eval-text", "{short_text}"],
     "one window needs 512"),
    (["bench", "--artifact", "{full}"], "not a complete advisor artifact"),
    (["worker", "--study", "nope", "--storage", "{study_db}"], "no study 'nope'"),
    (["worker", "--study", "nope", "--storage", "mysql://u:pw@127.0.0.1:1/db"],
     "cannot open the study storage"),
]


def _bad_files(tmp_path: Path) -> dict[str, Path]:
    from tests.fuzz.builders import (
        gguf_bytes,
        hf_dir,
        safetensors_bytes,
        tiny_llama_config,
    )

    files = {
        "{junk}": tmp_path / "junk.gguf",
        "{empty}": tmp_path / "empty.gguf",
        "{pickle}": tmp_path / "pytorch_model.bin",
        "{plan}": tmp_path / "plan.json",
        "{plan_type}": tmp_path / "plan_type.json",
        "{out}": tmp_path / "out",
        "{full}": tmp_path / "full",
        "{fake_artifact}": tmp_path / "fake_artifact",
        "{short_text}": tmp_path / "short.txt",
        "{study_db}": tmp_path / "studies.db",
    }
    files["{plan}"].write_text('{"backend": "gguf", "tensor_formats": {"blk.99.x": "Q4_K"}}')
    files["{plan_type}"].write_text('{"backend": "gguf", "tensor_formats": '
                                    '{"blk.0.ffn_down.weight": "Q9_Z"}}')
    files["{full}"].mkdir()
    (files["{full}"] / "notes.txt").write_text("not an artifact")
    files["{junk}"].write_bytes(b"not a model at all" * 10)
    files["{empty}"].write_bytes(b"")
    files["{pickle}"].write_bytes(b"\x80\x04")
    files["{fake_artifact}"].mkdir()
    (files["{fake_artifact}"] / "report.json").write_text(
        '{"version": 1, "backend": "gguf", "label": "fake"}')
    files["{short_text}"].write_text("Far too short for a window.")
    for key, kwargs in {"truncated": None, "tensor_count": {"n_tensors": 1 << 62},
                        "kv_count": {"n_kv": 1 << 40}, "offset": {"offset": 1 << 50},
                        "version": {"version": 99}, "alignment": {"alignment": 3},
                        "type": {"ttype": 9999}}.items():
        path = tmp_path / f"{key}.gguf"
        path.write_bytes(gguf_bytes()[:-100] if kwargs is None else gguf_bytes(**kwargs))
        files["{gguf_" + key + "}"] = path
    lie = {"w": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 1 << 40]}}
    q9 = {"w": {"dtype": "Q9", "shape": [4, 4], "data_offsets": [0, 64]}}
    files["{st_header_len}"] = hf_dir(tmp_path / "st_len", safetensors_bytes(header_len=1 << 40))
    files["{st_not_json}"] = hf_dir(tmp_path / "st_json", safetensors_bytes(raw_header=b"{no"))
    files["{st_offsets}"] = hf_dir(tmp_path / "st_off", safetensors_bytes(lie, data=bytes(64)))
    files["{st_dtype}"] = hf_dir(tmp_path / "st_dtype", safetensors_bytes(q9, data=bytes(64)))
    files["{cfg_missing}"] = hf_dir(tmp_path / "cfg1", config=tiny_llama_config(hidden_size=None))
    files["{cfg_arch}"] = hf_dir(tmp_path / "cfg2",
                                 config=tiny_llama_config(architectures=["FrobForCausalLM"]))
    files["{cfg_json}"] = hf_dir(tmp_path / "cfg3", config_text='{"hidden_size": ')
    pickles = tmp_path / "pickles"
    pickles.mkdir()
    (pickles / "config.json").write_text(json.dumps(tiny_llama_config()))
    (pickles / "pytorch_model.bin").write_bytes(b"\x80\x04")
    files["{pickle_dir}"] = pickles
    return files


def assert_one_line_exit_2(r: subprocess.CompletedProcess[str], needle: str) -> None:
    """The bad-input contract: exit 2, one line on stderr naming the problem, no traceback."""
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], r.stderr
    assert lines[0].startswith("advisor: error: ") and len(lines[0]) < 400


@pytest.mark.parametrize("args,needle", BAD_INPUT)
def test_bad_input_one_line_exit_2(tmp_path: Path, args: list[str], needle: str) -> None:
    files = _bad_files(tmp_path)
    assert_one_line_exit_2(advisor(*[str(files.get(a, a)) for a in args]), needle)


def test_bad_input_table_covers_the_issue() -> None:
    assert len(BAD_INPUT) >= 30 and len({tuple(a) for a, _ in BAD_INPUT}) == len(BAD_INPUT)


def test_infeasible_target_exit_3_names_the_nearest_alternative(tmp_path: Path) -> None:
    r = advisor("recommend", "--max-size", "1M", "--no-imatrix", "--out", str(tmp_path / "o"),
                "--json")
    assert r.returncode == 3, r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert "Traceback" not in r.stderr and "--max-size 1M" in line
    assert "nearest feasible: --max-size" in line and not (tmp_path / "o").exists()


def test_version_and_help_show_every_flag_with_its_default() -> None:
    import argparse
    from importlib.metadata import version

    from advisor.cli.parser import build_parser

    r = advisor("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"advisor {version('quant-advisor')}"
    parser = build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sp in subs.choices.items():
        text = sp.format_help()
        for action in sp._actions:
            if not action.option_strings or action.dest == "help":
                continue
            assert action.help, f"advisor {name} {action.option_strings[0]} has no help"
            shown = (action.default not in (None, False, argparse.SUPPRESS)
                     and not isinstance(action.default, bool))
            if shown and "default" not in action.help:
                assert f"(default: {action.default})" in " ".join(text.split()), \
                    f"advisor {name} {action.option_strings[0]}"
    units = " ".join(parser.format_help().split())
    assert "powers of 1024" in units and "powers of 1000" in units


def test_a_bad_size_names_the_units() -> None:
    r = advisor("recommend", "--max-size", "24 gigs", "--out", "/nonexistent/x")
    assert r.returncode == 2 and "powers of 1024" in r.stderr and "powers of 1000" in r.stderr


def test_a_report_names_the_model_by_file_and_digest_and_the_llama_cpp_build(
        tmp_path: Path, embedded_gguf: Path) -> None:
    import hashlib
    import shutil

    src = tmp_path / "models" / "smol.gguf"
    src.parent.mkdir()
    shutil.copy(embedded_gguf, src)
    r = subprocess.run([sys.executable, "-m", "advisor.cli", "quantize", "--model",
                        str(src), "--preset", "Q8_0", "--no-imatrix", "--out", "q8", "--json"],
                       capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "q8" / "report.json").read_text())
    m = rep["model"]
    assert m["path"] == "models/smol.gguf" and m["file"] == "smol.gguf"
    assert m["digest"] == "sha256:" + hashlib.sha256(src.read_bytes()).hexdigest()
    assert " = 1" in rep["provenance"]["llama_cpp_system_info"]  # e.g. "AVX2 = 1 |"
    # the command to reproduce it, as a shell reads it
    assert rep["provenance"]["command"] == (f"advisor quantize --model {src} --preset Q8_0 "
                                            "--no-imatrix --out q8 --json")


@pytest.mark.parametrize("args,code,warning", [
    (["--format", "fp8", "--target", "rtx3090"], 0, "cannot serve W8A8-FP8"),  # sm_86 < sm_89
    (["--format", "Q4_K_M", "--target", "rtx4090", "--context", "100000"], 0,
     "past the 8192"),
    (["--format", "Q4_K_M", "--target", "rpi5", "--batch", "2000", "--context", "8192"], 3,
     None),
])
def test_estimate_warns_of_what_the_target_cannot_run_and_exits_3_when_it_does_not_fit(
        args: list[str], code: int, warning: str | None) -> None:
    """Issue 18, item 5: FP8 on Ampere, a context past the trained length, a plan that does
    not fit (exit 3, the estimate still printed)."""
    r = advisor("estimate", *args, "--json")
    assert r.returncode == code, r.stderr
    out = json.loads(r.stdout)
    if warning:
        assert len(out["warnings"]) == 1 and warning in out["warnings"][0]
        assert warning in r.stderr
    else:
        assert out["warnings"] == [] and "over rpi5's" in r.stderr.strip().splitlines()[-1]
        assert out["estimate"]["total_memory"]["value"] > out["estimate"]["device_memory"]["value"]


def test_an_absent_accelerator_is_refused_before_any_work(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this host has a CUDA device")
    r = advisor("recommend", "--max-size", "90MB", "--device", "cuda",
                "--out", str(tmp_path / "out"))
    assert_one_line_exit_2(r, "--device cuda: torch sees no cuda device")
    assert "importance matrix" not in r.stderr and not (tmp_path / "out").exists()
