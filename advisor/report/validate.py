"""Validation of a report against the published schema (jsonschema, draft 2020-12)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from advisor.errors import AdvisorError


@lru_cache(maxsize=1)
def _validator() -> Any:
    import jsonschema

    from advisor.report.schema import SCHEMA

    cls = jsonschema.validators.validator_for(SCHEMA)
    cls.check_schema(SCHEMA)
    return cls(SCHEMA)


def report_errors(report: dict[str, Any]) -> list[str]:
    """Every place `report` breaks the schema, as `path: message` lines (empty when valid)."""
    out = []
    for e in sorted(_validator().iter_errors(report), key=lambda e: list(e.absolute_path)):
        path = "/".join(str(p) for p in e.absolute_path) or "(top)"
        out.append(f"{path}: {e.message[:200]}")
    return out


def validate_report(report: dict[str, Any]) -> None:
    """Raise AdvisorError (exit 1: a report that does not validate is a bug) naming the first
    problems; return None for a valid report."""
    errors = report_errors(report)
    if errors:
        more = f" (+{len(errors) - 2} more)" if len(errors) > 2 else ""
        raise AdvisorError(f"report does not match the published schema: "
                           f"{'; '.join(errors[:2])}{more}",
                           "this is a bug in the advisor; `advisor schema` prints the schema")
