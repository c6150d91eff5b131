"""The latency model fitted to published measurements, per device class, validated leaving one
device out.

Both phases take the form  seconds = work / (datasheet rate x efficiency) + a fixed cost (per
decoder layer for a decode step; per prompt for a server's prefill, none for llama-bench's): a
decode step's work is the bytes it reads (rate: memory bandwidth), a prefill's the FLOPs of the
prompt (rate: the peak of the kernels the runtime runs). A CPU decode step adds its matmul FLOPs
over the FP32 peak times a second efficiency: the cores that stream the weights also do the dot
products, and on a small CPU the two add up (held out, the bytes-only form missed the published
CPU rows by a median 64%, this one by 47%). Efficiency and fixed cost are fitted
per class (runtime and compute backend: llama.cpp on CUDA, on Metal, ...; vLLM), never per
device, by least squares on the relative error. Each class's band is the 10th-90th percentile of
measured/predicted over its leave-one-device-out predictions: a prediction for a device the fit
never saw lands inside it four times in five.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from advisor.calibration.observations import Observation, device_class, llama_cpp, vllm

TESTS = ("decode", "prefill")
MIN_BAND_ROWS = 5  # fewer held-out rows: the pooled band of the test on the same kind of
# processor (GPU or CPU), widened to the class's rows


@dataclass(frozen=True)
class Coefficients:
    efficiency: float  # fraction of the datasheet rate reached
    fixed_s: float  # seconds per fixed unit: a decoder layer of a decode step, or a prompt
    compute_efficiency: float = 0.0  # fraction of the peak a CPU decode's FLOPs run at (0: none)

    def seconds(self, amount: float, rate: float, fixed_units: int, flops: float = 0.0,
                peak: float = 0.0) -> float:
        compute = (flops / (peak * self.compute_efficiency)
                   if self.compute_efficiency and peak else 0.0)
        return amount / (rate * self.efficiency) + compute + fixed_units * self.fixed_s


@dataclass(frozen=True)
class ClassFit:
    """One class's fit for one phase, and how well it predicts devices it did not see."""

    cls: str
    test: str
    coefficients: Coefficients
    rows: int
    devices: tuple[str, ...]
    band: tuple[float, float]  # measured / predicted, 10th and 90th percentile (held out)
    loo_median_error: float | None  # median |predicted/measured - 1| of the held-out rows


@dataclass(frozen=True)
class Residual:
    """One published row predicted by a fit that left its device out."""

    obs: Observation
    predicted_s: float

    @property
    def ratio(self) -> float:
        """Predicted / measured speed (tokens per second)."""
        return self.obs.seconds / self.predicted_s


def coefficients(rows: Sequence[Observation]) -> Coefficients:
    """Least squares on the relative error. The fixed cost (per layer of a decode step: kernel
    launches, synchronisation; per prompt for a prefill: scheduling), then the compute term, is
    dropped when the rows cannot tell it apart from the efficiency or it comes out negative."""
    t = np.array([o.seconds for o in rows])
    work = np.array([o.amount / o.rate for o in rows]) / t
    compute = np.array([o.flops / o.peak if o.peak else 0.0 for o in rows]) / t
    fixed = np.array([o.fixed_units for o in rows], dtype=float) / t
    tries = [(c, f) for c in (bool(compute.any()), False) for f in (bool(fixed.any()), False)]
    for use_compute, use_fixed in dict.fromkeys(tries):
        cols = [work] + [compute] * use_compute + [fixed] * use_fixed
        if len(rows) < len(cols) + 1 and len(cols) > 1:
            continue
        coef, *_ = np.linalg.lstsq(np.stack(cols, axis=1), np.ones_like(t), rcond=None)
        if coef[0] > 0 and all(c > 0 for c in coef[1:1 + use_compute]) and (
                not use_fixed or coef[-1] >= 0):
            return Coefficients(1.0 / float(coef[0]), float(coef[-1]) if use_fixed else 0.0,
                                1.0 / float(coef[1]) if use_compute else 0.0)
    a = float(work @ np.ones_like(t) / (work @ work))
    return Coefficients(1.0 / a, 0.0)


def leave_one_device_out(rows: Sequence[Observation]) -> list[Residual]:
    """Each device's rows predicted by the fit to the class's other devices."""
    out = []
    for device in sorted({o.device for o in rows}):
        rest = [o for o in rows if o.device != device]
        if not rest:
            continue
        c = coefficients(rest)
        out += [Residual(o, c.seconds(o.amount, o.rate, o.fixed_units, o.flops, o.peak))
                for o in rows if o.device == device]
    return out


def _band(ratios: Sequence[float]) -> tuple[float, float]:
    """Measured/predicted seconds at the 10th and 90th percentile (the predicted figure times
    these bounds the measurement four times in five)."""
    lo, hi = np.percentile(np.asarray(ratios), [10, 90])
    return float(lo), float(hi)


@lru_cache(maxsize=1)
def observations() -> tuple[Observation, ...]:
    from advisor.calibration import cpu

    return tuple(llama_cpp() + vllm() + cpu.observations())


def _is_cpu(cls: str) -> bool:
    return cls.endswith("/CPU")


@lru_cache(maxsize=1)
def fits() -> dict[tuple[str, str], ClassFit]:
    """(class, test) -> its fit, for every class with published rows."""
    groups: dict[tuple[str, str], list[Observation]] = {}
    for o in observations():
        groups.setdefault((device_class(o.backend, o.runtime), o.test), []).append(o)
    held = {key: leave_one_device_out(rows) for key, rows in groups.items()}
    # pooled over the classes of the same kind of processor: a GPU class's band never takes
    # the CPUs' errors, nor the reverse
    pooled = {(test, cpu): [r.ratio for key, rs in held.items()
                            if key[1] == test and _is_cpu(key[0]) == cpu for r in rs]
              for test in TESTS for cpu in (False, True)}
    out = {}
    for key, rows in groups.items():
        res = held[key]
        ratios = [r.ratio for r in res]  # measured / predicted seconds
        if len(ratios) >= MIN_BAND_ROWS:
            band = _band(ratios)
        else:  # the test's pooled band, widened to every held-out row the class has
            same = pooled[(key[1], _is_cpu(key[0]))]
            lo, hi = _band(same) if same else (1.0, 1.0)
            band = (min([lo, *ratios]), max([hi, *ratios]))
        out[key] = ClassFit(
            cls=key[0], test=key[1], coefficients=coefficients(rows), rows=len(rows),
            devices=tuple(sorted({o.device for o in rows})), band=band,
            loo_median_error=(float(np.median([abs(r.ratio - 1) for r in res])) if res
                              else None))
    return out


def validation() -> dict[str, list[Residual]]:
    """test -> every held-out prediction of every class (the figures BENCHMARKS.md shows)."""
    groups: dict[tuple[str, str], list[Observation]] = {}
    for o in observations():
        groups.setdefault((device_class(o.backend, o.runtime), o.test), []).append(o)
    out: dict[str, list[Residual]] = {t: [] for t in TESTS}
    for (_, test), rows in sorted(groups.items()):
        out[test] += leave_one_device_out(rows)
    return out


def lookup(cls: str, test: str) -> ClassFit | None:
    return fits().get((cls, test))


def runtime_class(runtime: str, vendor: str | None) -> str | None:
    """The fitted class a deployment falls in: llama.cpp by the GPU's compute backend (its CPU
    backend where `vendor` is None: no accelerator), vLLM; None (no published rows: the roofline
    stays uncalibrated) for transformers."""
    if runtime == "vllm" and vendor in ("nvidia", "amd"):
        return "vllm"
    if runtime == "llama.cpp" and vendor is None:
        return "llama.cpp/CPU"
    backend = {"nvidia": "CUDA", "apple": "Metal", "amd": "ROCm"}.get(vendor or "")
    return f"llama.cpp/{backend}" if runtime == "llama.cpp" and backend else None
