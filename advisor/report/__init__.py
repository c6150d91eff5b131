"""Reports: the published JSON Schema of report.json, report.md, pareto.png, candidates.csv."""

from __future__ import annotations

from advisor.report.markdown import render_markdown
from advisor.report.render import (
    CSV_FILE,
    MARKDOWN_FILE,
    PLOT_FILE,
    render_files,
)
from advisor.report.schema import SCHEMA, SCHEMA_ID
from advisor.report.table import candidates_csv as candidates_csv_text
from advisor.report.validate import report_errors, validate_report

__all__ = ["CSV_FILE", "MARKDOWN_FILE", "PLOT_FILE", "SCHEMA", "SCHEMA_ID",
           "candidates_csv_text",
           "render_files", "render_markdown", "report_errors", "validate_report"]
