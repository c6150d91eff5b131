"""The last stage of a recommendation: the report, built in memory from the stages' values and
written once, with the pick's files, into the artifact at `--out` (atomically: complete or
absent); and `recommend.json` beside the candidates, written before the pick so that an
infeasible run still leaves what it measured."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from advisor.artifact import REPORT_FILE, staging, write_report
from advisor.hardware import HardwareProfile
from advisor.progress.clock import StageClock
from advisor.recommend.budget import Budget
from advisor.recommend.candidates import PresetOption
from advisor.recommend.config import RecommendConfig
from advisor.recommend.offers import Offer
from advisor.recommend.pick import pareto_front, spearman
from advisor.recommend.results import CandidateResult
from advisor.targets import Targets


@dataclass(frozen=True)
class Summary:
    """The measured candidates as the report lists them."""

    rows: list[dict[str, Any]]
    front: list[str]
    rho: float | None

    @classmethod
    def of(cls, results: list[CandidateResult]) -> Summary:
        rows = [r.to_dict() for r in results]
        front = pareto_front([(r.label, r.size, r.kl) for r in results])
        # GGUF rows only: the HF mixes' surrogate is another table (RTN round trips)
        pairs = [(r.realized.candidate.surrogate, r.kl) for r in results
                 if r.realized.candidate.surrogate is not None and not r.realized.candidate.is_hf]
        return cls(rows, front, spearman([a for a, _ in pairs], [b for _, b in pairs]))


def write_summary(work: Path, summary: Summary, search: dict[str, Any],
                  clock: StageClock) -> None:
    """`<out>.candidates/recommend.json`: every candidate measured, feasible or not."""
    work.mkdir(parents=True, exist_ok=True)
    body = {"candidates": summary.rows, "pareto_front": summary.front,
            "surrogate_spearman": summary.rho, "search": search, "stage_seconds": clock.seconds}
    (work / "recommend.json").write_text(json.dumps(body, indent=2, default=str) + "\n")


def recommendation(pick: CandidateResult, reason: str, summary: Summary, *, model: dict[str, Any],
                   targets: Targets, cfg: RecommendConfig, hw: HardwareProfile, host: bool,
                   budget: Budget, presets: list[PresetOption], search: dict[str, Any],
                   offers: list[Offer], hf_info: dict[str, Any], clock: StageClock,
                   provenance: dict[str, Any], versus: dict[str, Any] | None = None
                   ) -> dict[str, Any]:
    """report.json of the recommendation: the pick's artifact report extended with everything
    the pipeline decided and measured; `versus` is the pick against the best stock preset on
    the same windows (advisor.recommend.pick.versus_preset), when there is one."""
    pick_row: dict[str, Any] = {"label": pick.label, "kind": pick.kind, "reason": reason}
    if versus is not None:
        pick_row["versus_preset"] = versus
    # the candidate's ownership record is not the artifact's: write_report lists the files
    # (report.md, pareto.png, ...) and digests the weights of the directory it writes
    base = {k: v for k, v in pick.realized.report.items()
            if k not in ("version", "digests", "contents")}
    measured = {r["label"] for r in summary.rows}
    return {
        **base,
        "kind": "recommendation",
        "model": model,
        "targets": targets.to_dict(),
        "target_flags": cfg.flags,
        "hardware": hw.to_dict(),
        "host_measured": host,
        "budget": budget.to_dict(),
        "presets": [p.to_dict(p.label in measured) for p in presets],
        "candidates": summary.rows,
        "pareto_front": summary.front,
        "pick": pick_row,
        "surrogate_spearman": summary.rho,
        "search": search,
        "backends": [o.to_dict() for o in offers],
        "hf_candidates": hf_info,
        "stage_seconds": clock.seconds,
        "stage_peak_rss": clock.peak_rss,
        "provenance": provenance,
    }


def write_artifact(out: Path, pick: CandidateResult, rep: dict[str, Any],
                   clock: StageClock, t_emit: float, force: bool = False) -> None:
    """The pick's files, report.md / pareto.png / candidates.csv and report.json at `out`."""
    from advisor.report import render_files

    with staging(out, force=force) as tmp:
        for f in pick.realized.directory.iterdir():
            if f.name != REPORT_FILE and f.is_file():
                shutil.copy2(f, tmp / f.name)
        rep["stage_seconds"] = {**clock.seconds, "emit": round(time.perf_counter() - t_emit, 3)}
        render_files(rep, tmp)  # report.md, pareto.png, candidates.csv
        write_report(tmp, rep)
