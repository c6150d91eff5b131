"""The candidates of a recommendation and their realization: stock presets predicted to fit,
plans of the search, HF checkpoints; each written once into `<out>.candidates/<label>` (a rerun
reuses a complete candidate of the same plan).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from advisor.artifact import REPORT_FILE, is_complete
from advisor.errors import BadInput
from advisor.estimate import Estimate, Workload, estimate
from advisor.hardware import HardwareProfile
from advisor.modelspec import ModelSpec
from advisor.plan import AUTOROUND, BOTH, LLAMA_CPP, QuantPlan, written_by
from advisor.progress import Stages
from advisor.recommend.budget import fits_targets
from advisor.space import plan_for_format
from backends.base import QuantizeOptions

KINDS = ("search", "preset", "checkpoint", "checkpoint-search")
"""Where a candidate comes from: the GGUF search, a stock llama.cpp preset, a uniform HF
checkpoint scheme, the HF int-mix search (the report schema's CANDIDATE_KINDS)."""
HF_KINDS = ("checkpoint", "checkpoint-search")
AUTOROUND_SUFFIX = "+autoround"  # the label of a GGUF candidate's AutoRound copy
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Candidate:
    """A plan to realize and measure."""

    label: str
    kind: str
    plan: QuantPlan
    surrogate: float | None = None
    """The sensitivity table's predicted KL of the plan (None: outside the table)."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"candidate kind {self.kind!r}; expected one of {KINDS}")

    @property
    def is_hf(self) -> bool:
        return self.kind in HF_KINDS


@dataclass(frozen=True)
class PresetOption:
    """A stock preset with its prediction on the target."""

    label: str
    plan: QuantPlan
    estimate: Estimate
    fits: bool

    @property
    def size(self) -> int:
        return int(self.estimate.file_size.value)

    def to_dict(self, measured: bool) -> dict[str, Any]:
        return {"label": self.label, "fits": self.fits, "size_predicted": self.size,
                "memory_predicted": self.estimate.total_memory.value, "measured": measured}


@dataclass
class Realized:
    """A candidate written to disk, with its artifact report (kept in memory and updated as it
    is measured; the same dict is written to the candidate's report.json)."""

    candidate: Candidate
    directory: Path
    report: dict[str, Any] = field(default_factory=dict)


def preset_options(spec: ModelSpec, names: tuple[str, ...], hw: HardwareProfile, wl: Workload,
                   max_size: int | None, limits: list[tuple[str, int]],
                   imatrix: bool) -> list[PresetOption]:
    out = []
    for name in names:
        plan = plan_for_format(spec, name, imatrix=imatrix)
        est = estimate(spec, plan, hw, wl)
        out.append(PresetOption(name, plan, est, fits_targets(est, max_size, limits)))
    return out


def nearest_presets(options: list[PresetOption], n: int,
                    surrogate: Callable[[QuantPlan], float | None]) -> list[Candidate]:
    """The `n` largest presets predicted to fit (nearest the budget)."""
    fitting = sorted((p for p in options if p.fits), key=lambda p: -p.size)[:n]
    return [Candidate(p.label, "preset", p.plan, surrogate(p.plan)) for p in fitting]


def with_gguf_quantizer(todo: list[Candidate], quantizer: str) -> list[Candidate]:
    """The candidates as `--gguf-quantizer` asks: GGUF plans written by llama.cpp (as given),
    by AutoRound (plan option `quantizer`, label `<label>+autoround`), or both, each realized
    and measured so that the pick chooses between them on measurements."""
    if quantizer == LLAMA_CPP:
        return todo
    out = []
    for c in todo:
        if c.is_hf:
            out.append(c)
            continue
        if quantizer == BOTH:
            out.append(c)
        out.append(replace(c, label=c.label + AUTOROUND_SUFFIX,
                           plan=written_by(c.plan, AUTOROUND)))
    return out


def reusable(directory: Path, plan: QuantPlan, source_digest: str) -> dict[str, Any] | None:
    """The report of a complete candidate artifact of the same plan from the same source (a
    rerun resumes). The source is compared by its full content digest: issue 22 found another
    model's candidates reused when only the plan was compared, so an artifact for model B
    shipped model A's weights under B's name."""
    if not is_complete(directory):
        return None
    report: dict[str, Any] = json.loads((directory / REPORT_FILE).read_text())
    stored = report.get("planned") or report.get("plan")
    try:
        same = QuantPlan.from_dict(dict(stored or {})).digest() == plan.digest()
    except (KeyError, TypeError, ValueError, BadInput):
        return None
    model = report.get("model")
    same_source = isinstance(model, dict) and model.get("digest") == source_digest
    return report if same and same_source else None


def realize_all(todo: list[Candidate], work: Path, gguf_spec: ModelSpec, hf_spec: ModelSpec,
                hw: HardwareProfile, wl: Workload, options: QuantizeOptions,
                stages: Stages) -> list[Realized]:
    """Write every candidate into `work/<label>` (GGUF plans from `gguf_spec`, HF checkpoints
    from `hf_spec`), reusing complete ones of the same plan."""
    from advisor.realize import model_summary, quantize_artifact

    out = []
    digests = {False: model_summary(gguf_spec)["digest"], True: model_summary(hf_spec)["digest"]}
    labels = {c.label for c in todo}
    for c in todo:
        directory = work / c.label
        report = reusable(directory, c.plan, digests[c.is_hf])
        if report is None:  # the work directory is the tool's own: a stale candidate goes
            try:
                report = quantize_artifact(hf_spec if c.is_hf else gguf_spec, c.plan, hw,
                                           directory, options, wl, stages, options.calib_text,
                                           force=True)
            except BadInput as e:
                twin = c.label.removesuffix(AUTOROUND_SUFFIX)
                if twin == c.label or twin not in labels:
                    raise
                # --gguf-quantizer both: llama.cpp's copy of the plan stands in its place
                log.warning("%s left out: %s", c.label, e.problem)
                continue
        out.append(Realized(c, directory, report))
    return out
