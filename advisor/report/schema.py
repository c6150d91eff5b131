"""The published JSON Schema (draft 2020-12) of every `report.json` the advisor writes.

`advisor schema` prints it; `advisor.artifact.write_report` validates every report against it
before writing (a report that does not validate is a bug, never a file on disk).

The core is strict: `version`, `kind`, `model`, `plan`, and every figure (an object with a
`value` and a `unit`, or with an `origin`) must say where its number comes from. Sections that
belong to one backend or one stage (estimate details, backend options, provenance extras) stay
open (`additionalProperties`), so a backend can add what it measures without a schema change.
"""

from __future__ import annotations

from typing import Any

REPORT_SCHEMA_VERSION = 1
"""The version every report.json carries; the schema owns it (a reader of another version
refuses the file)."""
SCHEMA_ID = f"https://quant-advisor.dev/schemas/report-v{REPORT_SCHEMA_VERSION}.json"
ORIGINS = ["measured", "predicted", "datasheet", "reported"]
CANDIDATE_KINDS = ["search", "preset", "checkpoint", "checkpoint-search"]
"""GGUF: a searched plan or a stock llama.cpp preset; HF: a uniform checkpoint scheme or a
searched int4/int8/float mix (advisor.recommend.offers)."""

_num = {"type": "number"}
_int = {"type": "integer"}
_str = {"type": "string"}
_nullable_str = {"type": ["string", "null"]}
_nullable_num = {"type": ["number", "null"]}

_DEFS: dict[str, Any] = {
    "figure": {
        "description": "A number with its unit and origin (advisor.figures.Figure).",
        "type": "object",
        "required": ["value", "unit", "origin"],
        "properties": {"value": _num, "unit": _str, "origin": {"enum": ORIGINS}, "what": _str,
                       "ci95": {"type": "array", "items": _num, "minItems": 2, "maxItems": 2,
                                "description": "95% confidence interval (the error bar)"},
                       "band": {"type": "array", "items": _num, "minItems": 2, "maxItems": 2,
                                "description": "a prediction's error band: 10th-90th "
                                               "percentile of its model's held-out errors"}},
        "additionalProperties": False,
    },
    "labelled": {
        "description": "A number of the recommendation with its origin and what it measures.",
        "type": "object",
        "required": ["value", "origin", "what"],
        "properties": {"value": _num, "unit": _str, "origin": {"enum": ORIGINS}, "what": _str},
        "additionalProperties": False,
    },
    "origins_everywhere": {
        "description": "Anywhere in the report: an object holding a value and a unit, or an "
                       "origin, names a known origin (measured, predicted, datasheet, "
                       "reported).",
        "allOf": [
            {"if": {"type": "object", "required": ["value", "unit"]},
             "then": {"required": ["origin"]}},
            {"if": {"type": "object", "required": ["origin"]},
             "then": {"properties": {"origin": {"enum": ORIGINS}}}},
        ],
        "additionalProperties": {"$ref": "#/$defs/origins_everywhere"},
        "items": {"$ref": "#/$defs/origins_everywhere"},
    },
    "model": {
        "description": "The source model (advisor.realize.model_summary).",
        "type": "object",
        "required": ["name", "path", "format", "architecture", "n_params"],
        "properties": {
            "name": _str, "path": _str, "file": _str,
            "digest": {"type": "string",
                       "pattern": "^(sha256:[0-9a-f]{64}|identity:[0-9a-f]{32})$"},
            "format": {"enum": ["gguf", "hf"]},
            "architecture": _str, "n_params": {"type": "integer", "minimum": 0},
            "source_quantization": _nullable_str, "source_note": _nullable_str,
        },
        "additionalProperties": False,
    },
    "plan": {
        "description": "A QuantPlan: backend, one format per tensor, backend options.",
        "type": "object",
        "required": ["version", "backend", "label", "digest", "options", "tensor_formats"],
        "properties": {
            "version": {"const": 1}, "backend": {"type": "string", "minLength": 1},
            "label": _str, "digest": {"type": "string", "pattern": "^[0-9a-f]{8,64}$"},
            "options": {"type": "object"},
            "tensor_formats": {"type": "object", "minProperties": 1,
                               "additionalProperties": {"type": "string", "minLength": 1}},
        },
        "additionalProperties": False,
    },
    "quality": {
        "description": "advisor eval: quality vs the reference (every figure measured).",
        "type": "object",
        "required": ["version", "mean_kl", "top1_agreement", "n_windows", "window"],
        "properties": {
            "mean_kl": {"$ref": "#/$defs/measured"},
            "p99_kl": {"$ref": "#/$defs/measured"},
            "top1_agreement": {"$ref": "#/$defs/measured"},
            "perplexity": {"$ref": "#/$defs/measured"},
            "reference_perplexity": {"$ref": "#/$defs/measured"},
            "n_windows": _int, "window": _int, "n_tokens": _int,
            "kl_windows": {"type": "array", "items": _num,
                           "description": "mean KL of each window, in order (the unit the "
                                          "error bars resample)"},
        },
    },
    "bench": {
        "description": "advisor bench: latency and memory of a workload (every figure "
                       "measured).",
        "type": "object",
        "required": ["version", "ttft", "per_token", "latency_p95", "peak_rss", "workload",
                     "n_requests"],
        "properties": {
            "ttft": {"$ref": "#/$defs/measured"},
            "per_token": {"$ref": "#/$defs/measured"},
            "latency_p50": {"$ref": "#/$defs/measured"},
            "latency_p95": {"$ref": "#/$defs/measured"},
            "latency_p99": {"$ref": "#/$defs/measured"},
            "peak_rss": {"$ref": "#/$defs/measured"},
            "workload": {"$ref": "#/$defs/workload"},
            "n_requests": _int,
        },
    },
    "measured": {"allOf": [{"$ref": "#/$defs/figure"},
                           {"properties": {"origin": {"const": "measured"}}}]},
    "workload": {
        "type": "object",
        "required": ["prompt_tokens", "new_tokens", "concurrency", "context"],
        "properties": {k: {"type": "integer", "minimum": 0}
                       for k in ("prompt_tokens", "new_tokens", "concurrency", "context")},
    },
    "candidate": {
        "description": "One realized and measured candidate of a recommendation.",
        "type": "object",
        "required": ["label", "kind", "size_measured", "kl_measured", "memory", "p95",
                     "violations"],
        "properties": {
            "label": _str, "kind": {"enum": CANDIDATE_KINDS},
            "directory": _str, "plan_digest": _nullable_str,
            "size_predicted": _int, "size_measured": _int,
            "surrogate_kl": _nullable_num, "kl_measured": _num, "top1_measured": _nullable_num,
            "memory_predicted": _num, "memory": {"$ref": "#/$defs/labelled"},
            "latency_predicted": _num, "p95": {"$ref": "#/$defs/labelled"},
            "bench": {"type": "object", "additionalProperties": _num},
            "benched": {"type": "boolean"},
            "violations": {"type": "array", "items": _str},
        },
    },
}

_RECOMMENDATION: dict[str, Any] = {
    "required": ["targets", "hardware", "candidates", "pareto_front", "pick", "serve",
                 "measurements"],
    "properties": {
        "targets": {
            "type": "object",
            "required": ["workload", "vram_bytes", "mem_bytes", "max_size_bytes", "p95_s",
                         "max_kld"],
            "properties": {
                "workload": {"$ref": "#/$defs/workload"},
                "vram_bytes": {"type": ["integer", "null"]},
                "mem_bytes": {"type": ["integer", "null"]},
                "max_size_bytes": {"type": ["integer", "null"]},
                "p95_s": _nullable_num, "max_kld": _nullable_num,
            },
        },
        "hardware": {"type": "object", "required": ["name", "source", "cpu", "accelerators"]},
        "candidates": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/candidate"}},
        "pareto_front": {"type": "array", "items": _str},
        "pick": {
            "type": "object", "required": ["label", "kind", "reason"],
            "properties": {"label": _str, "kind": {"enum": CANDIDATE_KINDS},
                           "reason": _str,
                           "versus_preset": {
                               "description": "the pick's KL against the best stock preset's "
                                              "on the same windows, with 95% paired-bootstrap "
                                              "intervals (measured)",
                               "type": "object",
                               "required": ["preset", "n_windows", "ratio", "ratio_ci95",
                                            "difference", "difference_ci95", "resolved"]}},
        },
        "surrogate_spearman": _nullable_num,
        "presets": {"type": "array", "items": {"type": "object",
                                               "required": ["label", "fits", "size_predicted"]}},
        "stage_seconds": {"type": "object", "additionalProperties": _num},
        # an HF checkpoint pick has no bench here (vLLM does not run on this host)
        "measurements": {"required": ["quality"]},
        "backends": {"type": "array", "items": {
            "type": "object", "required": ["backend", "offered", "reason"],
            "properties": {"backend": _str, "offered": {"type": "boolean"}, "reason": _str}}},
    },
}

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": SCHEMA_ID,
    "title": "quant-advisor report.json",
    "description": (
        "The report of an advisor artifact directory: `kind` artifact (written by `advisor "
        "quantize`, extended by `advisor eval` and `advisor bench` under `measurements`) or "
        "recommendation (`advisor recommend`: the pick's artifact report plus every candidate, "
        "the Pareto front, the pick and why). Every figure says whether it was measured, "
        "predicted, read from a datasheet or reported by the system."),
    "type": "object",
    "required": ["version", "kind", "model", "plan", "backend", "size", "serve", "provenance"],
    "properties": {
        "version": {"const": REPORT_SCHEMA_VERSION,
                    "description": "schema version of this report"},
        "kind": {"enum": ["artifact", "recommendation"]},
        "backend": {"type": "string", "minLength": 1},
        "label": _str,
        "model": {"$ref": "#/$defs/model"},
        "plan": {"$ref": "#/$defs/plan"},
        "planned": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/plan"}],
                    "description": "the plan as asked, when the written one differs "
                                   "(fallbacks)"},
        "hardware": {"type": "object", "required": ["name", "source"],
                     "properties": {"name": _str, "source": _str}},
        "files": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}},
        "size": {"allOf": [{"$ref": "#/$defs/figure"},
                           {"properties": {"origin": {"const": "measured"}}}]},
        "estimate": {"type": "object", "description": "advisor.estimate.Estimate, predicted"},
        "serve": {"type": "object", "required": ["command"],
                  "properties": {"command": {"type": "string", "minLength": 1},
                                 "files": {"type": "array", "items": _str}}},
        "measurements": {
            "type": "object",
            "properties": {"quality": {"$ref": "#/$defs/quality"},
                           "bench": {"$ref": "#/$defs/bench"}},
        },
        "provenance": {"type": "object", "required": ["created", "versions", "seed", "command"],
                       "properties": {"created": _str, "seed": _int, "command": _str,
                                      "versions": {"type": "object",
                                                   "additionalProperties": _str}}},
    },
    "allOf": [
        {"$ref": "#/$defs/origins_everywhere"},
        {"if": {"required": ["kind"], "properties": {"kind": {"const": "recommendation"}}},
         "then": _RECOMMENDATION},
    ],
    "$defs": _DEFS,
}
