"""The files rendered from report.json: report.md, and for a recommendation pareto.png and
candidates.csv. `advisor report DIR` re-renders them from the JSON alone."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

MARKDOWN_FILE = "report.md"
PLOT_FILE = "pareto.png"
CSV_FILE = "candidates.csv"
_MODE = 0o644  # mkstemp creates 0600; the renderings are as readable as report.json


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, _MODE)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def render_files(rep: dict[str, Any], directory: Path) -> list[Path]:
    """Write the renderings of `rep` into `directory`, each file atomically; return them."""
    from advisor.report.markdown import render_markdown
    from advisor.report.plot import pareto_png
    from advisor.report.table import candidates_csv

    directory = Path(directory)
    written = []
    md = directory / MARKDOWN_FILE
    _atomic_write(md, render_markdown(rep).encode("utf-8"))
    written.append(md)
    if rep.get("kind") == "recommendation":
        csv_path = directory / CSV_FILE
        _atomic_write(csv_path, candidates_csv(rep).encode("utf-8"))
        fd, tmp = tempfile.mkstemp(prefix=f".{PLOT_FILE}.", suffix=".tmp", dir=directory)
        os.close(fd)
        try:
            os.chmod(tmp, _MODE)
            pareto_png(rep, Path(tmp))
            os.replace(tmp, directory / PLOT_FILE)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        written += [csv_path, directory / PLOT_FILE]
    return written
