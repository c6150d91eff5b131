"""The registry is the one table of backends: every scheme table is derived from its declare()
lines, and a backend added as one file plus one line (the toy of tests/backends/toy.py, declared
in tests/conftest.py) is offered, written and loaded with no other edit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import backends
from advisor.errors import BadInput
from advisor.probe import get_hardware
from advisor.recommend.offers import auto_writers, backend_choices, backend_offers, offered
from backends import registry


def test_scheme_tables_are_derived_from_the_declarations() -> None:
    assert registry.writers("W4A16")[:3] == ("rtn", "gptq", "awq")
    assert registry.default_writer("W4A16") == "rtn"
    assert registry.auto_writer("W4A16") == "gptq"  # declared auto= with its measured reason
    assert auto_writers() == {"W4A16": "gptq", "W8A16": "rtn", "W8A8-INT8": "smoothquant",
                              "W8A8-FP8": "fp8", "NF4": "nf4"}
    assert registry.bits_scheme("fp8", 8) == "W8A8-FP8"
    assert registry.bits_scheme("gptq", 4) == "W4A16" and registry.bits_scheme("nf4", 8) is None
    assert registry.schemes_of("gguf") == ()
    assert backends.names()[0] == "gguf" and "gguf" not in backends.hf_backends()
    assert backend_choices() == ("auto", *backends.names())


def test_unknown_names_and_double_declarations_are_refused() -> None:
    with pytest.raises(BadInput, match="known backends: gguf, rtn"):
        backends.get_backend("tensorrt")
    with pytest.raises(ValueError, match="declared twice"):
        backends.declare("rtn", "backends.rtn", ("W4A16",))
    with pytest.raises(ValueError, match="no declare"):
        backends.register("undeclared")(type("X", (), {}))
    with pytest.raises(ValueError, match="not among its formats"):
        registry.Entry("bad", "m", ("W4A16",), auto=("NF4",))


def test_a_declared_module_that_registers_nothing_is_an_error() -> None:
    backends.declare("hollow", "advisor.errors", ("W8A16",))
    try:
        with pytest.raises(ValueError, match="@register"):
            backends.get_backend("hollow")
    finally:
        registry.undeclare("hollow")
    assert "hollow" not in backends.names()


def test_the_toy_backend_is_offered_like_any_other() -> None:
    assert "toy" in backends.names() and "toy" in backend_choices()
    gpu = get_hardware("rtx4090", None)
    assert offered(backend_offers("toy", gpu)) == {"toy"}
    assert "toy" in offered(backend_offers("auto", gpu))
    assert "toy" not in auto_writers().values()  # the first declared writer keeps W8A16
    cpu = {o.backend: o for o in backend_offers("auto", get_hardware("x86-server", None))}
    assert not cpu["toy"].offered and "GPU" in cpu["toy"].reason


def test_the_toy_backend_is_written_by_quantize_and_loads(tmp_path: Path) -> None:
    from advisor.cli.main import main
    from tests.conftest import tiny_hf_model

    model_dir, _ = tiny_hf_model(tmp_path)
    out = tmp_path / "toy-artifact"
    code = main(["-q", "quantize", "--model", str(model_dir), "--backend", "toy", "--bits", "8",
                 "--target", "rtx4090", "--out", str(out)])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["backend"] == "toy" and report["plan"]["options"]["group_size"] == 128
    assert set(report["plan"]["tensor_formats"].values()) == {"W8A16", "F16"}
    config = json.loads((out / "config.json").read_text())
    assert config["quantization_config"]["quant_method"] == "compressed-tensors"
    assert report["serves_on_target"]["ok"]
