"""Issue 22, finding 1: code from a model directory never runs.

Two layers, each tested on its own: every transformers loader of the product passes
`trust_remote_code=False` literally (an AST scan), and a directory whose configs carry `auto_map`
is refused with one BadInput line before transformers sees it (the real code paths, with
transformers' dynamic-module loader trapped, and the CLI in a child process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from advisor.errors import BadInput
from tests.security.evil import (
    REPORT,
    RemoteCodeRan,
    advisor,
    custom_code_dir,
    one_error_line,
    trap_remote_code,
)
from tests.security.scan import remote_code_hits, scan, snippet_hits, sources

REFUSED = "custom code (auto_map in {}) is refused: the advisor never runs code from a model "\
          "directory; use a checkpoint whose architecture transformers ships"
WHERE = ["config.json", "tokenizer_config.json"]


def test_every_transformers_loader_passes_trust_remote_code_false() -> None:
    assert len(sources()) > 50
    hits = scan(remote_code_hits)
    assert not hits, "\n".join(hits)


def test_code_written_into_artifacts_passes_trust_remote_code_false() -> None:
    hits = scan(snippet_hits)
    assert not hits, "\n".join(hits)


def test_the_scanners_see_a_loader_without_the_keyword() -> None:
    """The scans can fail: an omitted, a True and a computed keyword are all found."""
    src = ("import transformers as t\nfrom transformers import pipeline\n"
           "t.AutoTokenizer.from_pretrained(d)\n"
           "t.AutoModel.from_pretrained(d, trust_remote_code=True)\n"
           "t.AutoModel.from_config(c, trust_remote_code=flag)\n"
           "pipeline('text-generation', model=d)\n"
           "t.AutoConfig.from_pretrained(d, trust_remote_code=False)\n"
           "CODE = 'm = AutoModel.from_pretrained(here)\\n'\n")
    assert [h.line for h in remote_code_hits(src)] == [3, 4, 5, 6]
    assert [h.line for h in snippet_hits(src)] == [8]


@pytest.mark.parametrize("where", WHERE)
def test_the_trap_and_the_payload_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       where: str) -> None:
    """With trust_remote_code=True, transformers does reach the trapped loader on these
    directories (so a test below passing means "refused", not "never asked"); untrapped, in a
    child process, it runs the directory's code and the marker appears."""
    import transformers

    marker = tmp_path / "ran"
    d = custom_code_dir(tmp_path / "m", marker, (where,))
    load = (transformers.AutoConfig if where == "config.json" else transformers.AutoTokenizer)
    trap_remote_code(monkeypatch)
    with pytest.raises(RemoteCodeRan):
        load.from_pretrained(str(d), trust_remote_code=True)
    assert not marker.exists()
    code = (f"import transformers; transformers.{load.__name__}.from_pretrained("
            f"{str(d)!r}, trust_remote_code=True)")
    subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=300,
                   env={**os.environ, "HF_MODULES_CACHE": str(tmp_path / "hf-modules")})
    assert marker.is_file()


def _entries(d: Path) -> dict[str, Any]:
    """Every product entry that hands a directory to transformers, as a thunk."""
    from advisor.inspect import inspect_model
    from advisor.measure.stage import read_artifact
    from backends.base import QuantizeOptions
    from backends.gguf.vocab import _add_gpt2
    from backends.hf.base import calibration_windows
    from backends.hf.runner import HfRunner
    from backends.hf.stream import empty_model

    return {
        "inspect_model": lambda: inspect_model(d),
        "read_artifact": lambda: read_artifact(d),
        "HfRunner": lambda: HfRunner(d),
        "calibration_windows": lambda: calibration_windows(d, QuantizeOptions()),
        "empty_model": lambda: empty_model(d),
        "gguf vocabulary": lambda: _add_gpt2(None, d, 1 << 20, {}),
    }


ENTRIES = ["inspect_model", "read_artifact", "HfRunner", "calibration_windows", "empty_model",
           "gguf vocabulary"]


@pytest.mark.parametrize("where", WHERE)
@pytest.mark.parametrize("entry", ENTRIES)
def test_each_entry_refuses_custom_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        where: str, entry: str) -> None:
    marker = tmp_path / "ran"
    d = custom_code_dir(tmp_path / "m", marker, (where,))
    (d / "report.json").write_text(json.dumps(REPORT))
    trap_remote_code(monkeypatch)
    with pytest.raises(BadInput) as e:
        _entries(d)[entry]()
    assert e.value.one_line().endswith(REFUSED.format(where)), e.value.one_line()
    assert not marker.exists()


@pytest.mark.parametrize("entry", ["HfRunner", "calibration_windows", "empty_model"])
def test_with_the_check_bypassed_transformers_still_runs_no_code(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, entry: str) -> None:
    """The second layer alone: the directory check switched off, a config naming a model type
    transformers does not ship, so only `auto_map` could build it. The calls' own
    trust_remote_code=False makes transformers refuse (any error but the trap's)."""
    import backends.hf.base
    import backends.hf.runner
    import backends.hf.stream

    marker = tmp_path / "ran"
    d = custom_code_dir(tmp_path / "m", marker, tuple(WHERE), model_type="hostile")
    monkeypatch.setattr(backends.hf.runner, "check_hf_dir", lambda d: None)
    monkeypatch.setattr(backends.hf.base, "refuse_custom_code", lambda d: None)
    monkeypatch.setattr(backends.hf.stream, "refuse_custom_code", lambda d: None)
    trap_remote_code(monkeypatch)
    with pytest.raises(Exception):  # noqa: B017 - anything but RemoteCodeRan (a BaseException)
        _entries(d)[entry]()
    assert not marker.exists()


@pytest.mark.parametrize("where", WHERE)
@pytest.mark.parametrize("command", [
    ["inspect", "--model", "{d}"],
    ["quantize", "--model", "{d}", "--backend", "rtn", "--preset", "W4A16", "--out", "{out}"],
    ["eval", "--model", "{d}", "--artifact", "{d}"],
    ["recommend", "--model", "{d}", "--out", "{out}"],
])
def test_cli_refuses_custom_code_in_one_line(tmp_path: Path, where: str,
                                             command: list[str]) -> None:
    marker = tmp_path / "ran"
    d = custom_code_dir(tmp_path / "m", marker, (where,))
    (d / "report.json").write_text(json.dumps(REPORT))
    args = [a.replace("{d}", str(d)).replace("{out}", str(tmp_path / "out")) for a in command]
    line = one_error_line(advisor(*args, scratch=tmp_path))
    assert line.endswith(REFUSED.format(where)), line
    assert not marker.exists() and not (tmp_path / "out").exists()
