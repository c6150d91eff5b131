"""The sensitivity stage of a GGUF plan space, exactly as `advisor recommend` and `advisor worker`
build it: the GGUF backend's importance matrix (its quantization chunks, so the table scores the
very rows the candidates get) and the table on the project's calibration text, both cached."""

from __future__ import annotations

from pathlib import Path

from advisor.modelspec import ModelSpec, SourceFormat
from advisor.progress import Stages
from advisor.sensitivity.measure import sensitivity_table
from advisor.sensitivity.table import SensitivityConfig, SensitivityTable
from advisor.space import PlanSpace
from advisor.textdata import default_calibration_text

ROW_SAMPLE = 1
"""SensitivityConfig.row_sample of an anchored table below ROW_SAMPLE_FROM parameters. Every row:
with every 4th row the table took 30.3 s instead of 51.7 s on the embedded model and its pick
measured 0.0339 nats against 0.0344, but on the rotated float-native copy 0.0635 against 0.0607
(4.6% worse; recommend --max-size <Q3_K_M bytes> --candidates 1 --presets 1 --eval-windows 4
--bench-requests 1)."""
ROW_SAMPLE_LARGE = 4
ROW_SAMPLE_FROM = 1e9
"""From 1B parameters every 4th row: there quantizing every candidate type of every tensor is
the table's cost, in time and in memory (a layer's candidates, in float32, for the layer being
measured and the one prepared beside it). A random-weight SmolLM2-1.7B (fast settings): table
351 s and 4.99 GB peak RSS with every row (issue 17's bound there is 2.78 GB)."""


def row_sample(n_params: int, anchors: int) -> int:
    """SensitivityConfig.row_sample for a model of `n_params` (1: every row, no anchors)."""
    if not anchors:
        return 1
    return ROW_SAMPLE_LARGE if n_params >= ROW_SAMPLE_FROM else ROW_SAMPLE


def gguf_sensitivity(spec: ModelSpec, space: PlanSpace, *, imatrix: bool, threads: int,
                     stages: Stages, anchors: int = 0, device: str = "cpu") -> SensitivityTable:
    """The sensitivity table of `space` (a plan space of `spec`); an HF source is measured as its
    cached F16 GGUF. `anchors`: SensitivityConfig.anchors (0: every layer measured). `device`:
    a `--device` value (backends.hf.DEVICES); only the streamed sweep of an anchored table
    runs off the CPU."""
    from backends.gguf import IMATRIX_CHUNKS, f16_reference, imatrix_for
    from backends.hf import resolve_device

    src = Path(spec.path) if spec.format is SourceFormat.GGUF else f16_reference(spec, threads)
    calib = default_calibration_text()
    values = None
    if imatrix:
        with stages.step("importance matrix (cached after the first run)"):
            values = imatrix_for(src, calib, key_path=src, threads=threads,
                                 max_chunks=IMATRIX_CHUNKS, device=resolve_device(device)).values
    config = SensitivityConfig(anchors=anchors, row_sample=row_sample(spec.n_params, anchors))
    with stages.bar("sensitivity table (cached after the first run)") as bar:
        return sensitivity_table(src, space, text=calib, imatrix=values, threads=threads,
                                 config=config,
                                 on_progress=bar,
                                 device=resolve_device(device))
