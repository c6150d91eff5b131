"""Hostile model directories for the security tests: custom code that leaves a marker file when
Python imports it, and a pickle that leaves one when it is unpickled. A test passes only while
the marker stays absent; `tests/security/test_*` also prove each payload does fire when opened
the unsafe way, so an absent marker means "not run", not "broken payload"."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.fuzz.builders import hf_dir, tiny_llama_config

REPORT = {"version": 1, "backend": "rtn", "label": "hostile"}


class RemoteCodeRan(BaseException):
    """Raised by the trapped transformers loaders; a BaseException so no `except Exception` on
    the way up can swallow it."""


def _module(marker: Path, cls: str, base: str) -> str:
    return (f"open({str(marker)!r}, 'w').write({cls!r})\n"
            f"from transformers import {base}\n\n\n"
            f"class {cls}({base}):\n    model_type = 'hostile'\n")


def custom_code_dir(path: Path, marker: Path, where: tuple[str, ...] = ("config.json",),
                    model_type: str = "llama") -> Path:
    """A tiny Llama directory (config.json, model.safetensors) whose files `where` carry
    `auto_map` to modules beside it that write `marker` on import."""
    config: dict[str, Any] = tiny_llama_config(model_type=model_type)
    if "config.json" in where:
        config["auto_map"] = {"AutoConfig": "configuration_hostile.HostileConfig",
                              "AutoModelForCausalLM": "modeling_hostile.HostileForCausalLM"}
    hf_dir(path, config=config)
    (path / "configuration_hostile.py").write_text(
        _module(marker, "HostileConfig", "LlamaConfig"))
    (path / "modeling_hostile.py").write_text(
        _module(marker, "HostileForCausalLM", "LlamaForCausalLM"))
    (path / "tokenization_hostile.py").write_text(
        _module(marker, "HostileTokenizer", "PreTrainedTokenizerFast"))
    if "tokenizer_config.json" in where:
        (path / "tokenizer_config.json").write_text(json.dumps({
            "tokenizer_class": "HostileTokenizer",
            "auto_map": {"AutoTokenizer": ["tokenization_hostile.HostileTokenizer", None]}}))
    return path


def payload(marker: Path) -> bytes:
    """A pickle that creates `marker` when loaded."""

    class Payload:
        def __reduce__(self) -> tuple[Any, ...]:
            return (exec, (f"open({str(marker)!r}, 'w').close()",))

    return pickle.dumps(Payload())


def pickle_artifact(path: Path, marker: Path, config: bool = True) -> Path:
    """An HF-artifact-like directory: a complete report.json and only pytorch_model.bin."""
    path.mkdir(parents=True)
    (path / "report.json").write_text(json.dumps(REPORT))
    if config:
        (path / "config.json").write_text(json.dumps(tiny_llama_config()))
    (path / "pytorch_model.bin").write_bytes(payload(marker))
    return path


def trap_remote_code(monkeypatch: Any) -> None:
    """Every transformers entry that imports a model directory's code raises RemoteCodeRan."""
    import transformers
    from transformers import dynamic_module_utils

    for name in ("AutoConfig", "AutoTokenizer", "AutoModelForCausalLM", "AutoProcessor",
                 "AutoImageProcessor", "AutoFeatureExtractor", "pipeline"):
        getattr(transformers, name)  # import the lazy modules that hold the name

    def trap(*args: Any, **kwargs: Any) -> Any:
        raise RemoteCodeRan(f"remote code would run: {args[:1]}")

    for mod in list(sys.modules.values()):
        if (getattr(mod, "__name__", "").startswith("transformers")
                and hasattr(mod, "get_class_from_dynamic_module")):
            monkeypatch.setattr(mod, "get_class_from_dynamic_module", trap)
    for name in ("get_class_in_module", "get_cached_module_file"):
        monkeypatch.setattr(dynamic_module_utils, name, trap)


def advisor(*args: str, scratch: Path) -> subprocess.CompletedProcess[str]:
    """The CLI in a child process, with transformers' module cache under `scratch`."""
    env = {**os.environ, "HF_MODULES_CACHE": str(scratch / "hf-modules")}
    return subprocess.run([sys.executable, "-m", "advisor.cli", *args], capture_output=True,
                          text=True, timeout=300, env=env)


def one_error_line(r: subprocess.CompletedProcess[str]) -> str:
    """The single `advisor: error: ...` line of a refused run (exit 2, no traceback)."""
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("advisor: error: "), r.stderr
    return lines[0]
