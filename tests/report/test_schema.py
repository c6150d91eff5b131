"""The published schema: a valid draft 2020-12 document, printed by `advisor schema`; strict on
the core (version, kind, model, plan, figures with origin), open for backend sections; and
`write_report` refuses a report that breaks it."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from advisor.artifact import REPORT_FILE, REPORT_SCHEMA_VERSION, staging, write_report
from advisor.errors import AdvisorError
from advisor.report import SCHEMA, report_errors

DATA = Path(__file__).parent / "data"


def recommendation() -> dict[str, Any]:
    rep: dict[str, Any] = json.loads((DATA / "recommendation.json").read_text())
    return rep


def artifact() -> dict[str, Any]:
    """The pick's own artifact report (as `advisor quantize` + eval + bench wrote it)."""
    rep = recommendation()
    keep = ("version", "kind", "backend", "label", "model", "hardware", "serves_on_target",
            "plan", "planned", "files", "size", "estimate", "serve", "measurements",
            "provenance")
    out = {k: rep[k] for k in keep}
    out["kind"] = "artifact"
    out["hardware"] = {"name": rep["hardware"]["name"], "source": rep["hardware"]["source"]}
    return out


def test_schema_is_a_valid_2020_12_document() -> None:
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["properties"]["version"]["const"] == REPORT_SCHEMA_VERSION


def test_advisor_schema_prints_it() -> None:
    r = subprocess.run([sys.executable, "-m", "advisor.cli", "schema"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == json.loads(json.dumps(SCHEMA))


def test_recorded_reports_validate() -> None:
    assert report_errors(recommendation()) == []
    assert report_errors(artifact()) == []
    fresh = artifact()
    fresh["measurements"] = {}  # as `advisor quantize` writes it, before eval and bench
    assert report_errors(fresh) == []


def _mutate(rep: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    rep = copy.deepcopy(rep)
    *parents, last = path.split("/")
    node: Any = rep
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node[p]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    return rep


@pytest.mark.parametrize("path,value,needle", [
    ("version", 2, "version"),
    ("kind", KeyError, "'kind' is a required property"),
    ("kind", "guess", "kind"),
    ("model", KeyError, "'model' is a required property"),
    ("model/n_params", "many", "model/n_params"),
    ("model/favourite_colour", "blue", "model"),
    ("plan", KeyError, "'plan' is a required property"),
    ("plan/tensor_formats", {}, "plan/tensor_formats"),
    ("plan/digest", "not hex!", "plan/digest"),
    ("size/origin", "predicted", "size/origin"),
    ("estimate/ttft/origin", KeyError, "estimate/ttft"),
    ("estimate/ttft/origin", "guessed", "estimate/ttft/origin"),
    ("hardware/cpu/ram_total/origin", KeyError, "hardware/cpu/ram_total"),
    ("measurements/quality/mean_kl/origin", "predicted", "measurements/quality/mean_kl"),
    ("measurements/bench/latency_p95", KeyError, "measurements/bench"),
    ("candidates/0/kl_measured", KeyError, "candidates/0"),
    ("candidates/0/p95/origin", "vibes", "candidates/0/p95/origin"),
    ("pick/label", KeyError, "pick"),
    ("pareto_front", "search-0", "pareto_front"),
])
def test_core_is_strict(path: str, value: Any, needle: str) -> None:
    errors = report_errors(_mutate(recommendation(), path, value))
    assert errors and any(needle in e for e in errors), errors


def test_backend_sections_stay_open() -> None:
    rep = recommendation()
    rep["plan"]["options"]["group_size"] = 128  # e.g. an HF backend's options
    rep["estimate"]["kernel"] = "marlin"
    rep["measurements"]["gpu"] = {"peak_vram": {"value": 1.0, "unit": "bytes",
                                                "origin": "measured"}}
    rep["calibration"] = {"samples": 128}
    assert report_errors(rep) == []
    rep["measurements"]["gpu"]["peak_vram"].pop("origin")  # but a figure still needs origin
    assert report_errors(rep)


def test_write_report_refuses_an_invalid_report(tmp_path: Path) -> None:
    out = tmp_path / "out"
    bad = artifact()
    bad.pop("version")
    bad["size"]["origin"] = "predicted"  # the size of a written file is measured
    with pytest.raises(AdvisorError, match="size/origin"):
        with staging(out) as tmp:
            write_report(tmp, bad)
    assert not out.exists() and not list(tmp_path.iterdir())
    good = artifact()
    good.pop("version")
    with staging(out) as tmp:
        write_report(tmp, good)
    assert json.loads((out / REPORT_FILE).read_text())["version"] == REPORT_SCHEMA_VERSION
