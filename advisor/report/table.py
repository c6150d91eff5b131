"""candidates.csv: one row per measured candidate of a recommendation, origins in the headers."""

from __future__ import annotations

import csv
import io
from typing import Any

COLUMNS = (
    ("label", "label"), ("kind", "kind"), ("pick", "pick"), ("pareto", "pareto"),
    ("meets_targets", "meets_targets"), ("size_bytes_measured", "size_measured"),
    ("size_bytes_predicted", "size_predicted"), ("mean_kl_measured", "kl_measured"),
    ("surrogate_kl_predicted", "surrogate_kl"), ("top1_measured", "top1_measured"),
    ("p95_s", "p95"), ("p95_origin", "p95"), ("memory_bytes", "memory"),
    ("memory_origin", "memory"), ("latency_s_predicted", "latency_predicted"),
    ("memory_bytes_predicted", "memory_predicted"), ("violations", "violations"),
    ("plan_digest", "plan_digest"),
)


def _cell(header: str, key: str, row: dict[str, Any], rep: dict[str, Any]) -> Any:
    if header == "pick":
        return int(row["label"] == rep["pick"]["label"])
    if header == "pareto":
        return int(row["label"] in rep.get("pareto_front", []))
    if header == "meets_targets":
        return int(not row["violations"])
    if header == "violations":
        return "; ".join(row["violations"])
    v = row.get(key)
    if isinstance(v, dict):
        return v["origin"] if header.endswith("_origin") else v["value"]
    return "" if v is None else v


def candidates_csv(rep: dict[str, Any]) -> str:
    """The CSV text (header + one line per candidate, in the report's order)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([h for h, _ in COLUMNS])
    for row in rep["candidates"]:
        w.writerow([_cell(h, k, row, rep) for h, k in COLUMNS])
    return buf.getvalue()
