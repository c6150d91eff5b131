"""The one Protocol every backend implements, and the small types around it.

A backend turns (ModelSpec, QuantPlan) into files in a staging directory, says whether a target
can serve them, loads them back for measurement, and writes its serving commands. The search
never sees more than this.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from advisor.artifact.serving import Serving
from advisor.hardware import HardwareProfile
from advisor.modelspec import ModelSpec
from advisor.plan import QuantPlan


@dataclass(frozen=True)
class Support:
    """Whether a backend can run here / serve on a target, and why not."""

    ok: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.ok


def library_support(label: str, modules: tuple[str, ...], install: str,
                    env: dict[str, str] | None = None) -> Support:
    """Whether a maintained library's `modules` import here (the first module's version named
    as `label`), with the environment defaults it reads at import (`env`, the user's own values
    kept) set first."""
    import importlib
    import os

    for key, value in (env or {}).items():
        os.environ.setdefault(key, value)
    try:
        first = [importlib.import_module(m) for m in modules][0]
    except ImportError as e:
        return Support(False, f"{e.name} not installed: {install}")
    return Support(True, f"{label} {getattr(first, '__version__', '?')}")


@dataclass(frozen=True)
class QuantizeOptions:
    """What a quantize call needs besides the plan."""

    # calibration text (importance matrix, GPTQ Hessians); "" = the project's default,
    # advisor.textdata.default_calibration_text() (data/calibration.txt)
    calib_text: str = ""
    imatrix: bool = True  # use an importance matrix where the format benefits from it
    threads: int = 0  # 0 = all cores
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    imatrix_file: str | None = None  # an existing importance matrix (llama.cpp's formats)
    # the serving files' context: 0 = the model's trained context capped to fit memory_limit
    # (bytes; None = the target's memory); see advisor.artifact.serving
    context: int = 0
    memory_limit: int | None = None


@runtime_checkable
class Runner(Protocol):
    """A loaded quantized model in its real runtime, for quality and latency measurement."""

    def tokenize(self, text: str) -> list[int]: ...

    def logits(self, tokens: list[int]) -> np.ndarray:
        """Float32 logits [len(tokens), vocab] of one sequence, evaluated from an empty cache."""
        ...

    def generate(self, tokens: list[int], max_new_tokens: int) -> tuple[list[int], list[float]]:
        """Greedy decode; returns the new tokens and the wall time (s) at which each arrived,
        measured from the call (the first entry is the time to first token)."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class Backend(Protocol):
    """A deployment format and its runtime."""

    name: str

    def available(self) -> Support:
        """Can this host quantize and run it (dependencies installed)?"""
        ...

    def serves_on(self, hw: HardwareProfile) -> Support:
        """Can the target serve this format, and if not, why not."""
        ...

    def quantize(self, spec: ModelSpec, plan: QuantPlan, out_dir: Path,
                 options: QuantizeOptions) -> QuantPlan:
        """Write the weights for `plan` into `out_dir` (a staging directory); return the plan as
        really written (fallback types recorded)."""
        ...

    def load(self, artifact_dir: Path, n_ctx: int = 2048, threads: int = 0) -> Runner:
        """Load written weights in the backend's runtime."""
        ...

    def serve_files(self, artifact_dir: Path, plan: QuantPlan, hw: HardwareProfile,
                    serving: Serving) -> dict[str, str]:
        """Serving files to add to the artifact (file name -> text): serve.sh, Modelfile, ...,
        with the context, parallel slots and interpreter of `serving`."""
        ...
