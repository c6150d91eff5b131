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
"""SensitivityConfig.row_sample of an anchored table. Every row: with every 4th row the table
took 30.3 s instead of 51.7 s on the embedded model and its pick measured 0.0339 nats against
0.0344, but on the rotated float-native copy 0.0635 against 0.0607 (4.6% worse; recommend
--max-size <Q3_K_M bytes> --candidates 1 --presets 1 --eval-windows 4 --bench-requests 1)."""


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
                                 max_chunks=IMATRIX_CHUNKS).values
    with stages.bar("sensitivity table (cached after the first run)") as bar:
        return sensitivity_table(src, space, text=calib, imatrix=values, threads=threads,
                                 config=SensitivityConfig(
                                     anchors=anchors, row_sample=ROW_SAMPLE if anchors else 1),
                                 on_progress=bar,
                                 device=resolve_device(device))
