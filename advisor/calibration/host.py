"""This host's own latency model, fitted to its benches (issue 18, item 4).

Every `advisor bench` (recommend's measured phase included) appends what the estimate was
computed from (`Estimate.features`: decoder layers, bytes read and FLOPs per decode step, FLOPs
and bytes of the prompt) and what was measured to `host-benches.jsonl` in the cache, keyed by the
host (CPU model, cores, llama.cpp version). A later estimate for this host fits, per phase,
seconds = c_layers x layers + c_flops x FLOPs + c_bytes x bytes (non-negative least squares on
the relative error) to the benches of *other* artifacts, and predicts with it: the roofline's
fixed efficiencies replaced by the ones this machine showed. Its band is the spread of the fit's
leave-one-out errors over those benches (from three on). With a single bench, the roofline is
rescaled by that bench's measured / predicted ratio.

Where this host's llama.cpp kernels were timed for every type of the plan
(`advisor.calibration.kernels`), that sum replaces the fit: scaled by the median measured / sum
ratio of the earlier benches (band: each bench's ratio against the median of the others, from
three benches on), or alone before any bench. Presets of one model share its layers and FLOPs,
so a fit cannot tell a byte of Q6_K from a byte of Q4_K; the kernel timings can.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

STORE = "host-benches.jsonl"
MIN_RECORDS = 2
_TERMS = {"decode": ("layers", "decode_flops", "decode_bytes"),
          "prefill": ("layers", "prefill_flops", "prefill_bytes")}


@lru_cache(maxsize=1)
def host_key() -> str:
    """The machine and runtime a bench ran on: CPU model, logical cores, llama.cpp's version."""
    import importlib.metadata

    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")),
                         model)
    except OSError:
        pass
    try:
        llama = importlib.metadata.version("llama_cpp_python")
    except importlib.metadata.PackageNotFoundError:
        llama = "none"
    return f"{model} | {os.cpu_count()} cpus | llama.cpp {llama}"


def _store() -> Path:
    from advisor.artifact.cache import cache_root

    return cache_root() / STORE


def records(key: str | None = None) -> list[dict[str, Any]]:
    """This host's benches (unreadable lines are skipped: the file is the cache's, not the
    user's, and a torn last line must not stop an estimate)."""
    version = _version()
    return list(_read(*version, key or host_key())) if version else []


def _version() -> tuple[str, int, int] | None:
    """The store's path, modification time and size: what its cached reads are keyed by."""
    path = _store()
    try:
        st = path.stat()
    except OSError:
        return None
    return str(path), st.st_mtime_ns, st.st_size


@lru_cache(maxsize=8)
def _read(path: str, mtime_ns: int, size: int, key: str) -> tuple[dict[str, Any], ...]:
    """The store's records for `key`, read once per version of the file (a search estimates
    thousands of plans)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError:
        return ()
    out = []
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and rec.get("host") == key and isinstance(rec.get("features"),
                                                                            dict):
            out.append({**rec, "features": numeric(rec["features"])})
    return tuple(out)


def numeric(features: Any) -> dict[str, float]:
    """The numbers of a features mapping (a report or the store may carry anything else)."""
    if not isinstance(features, dict):
        return {}
    return {str(k): float(v) for k, v in features.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)}


def add(artifact_id: str, features: dict[str, float], per_token_s: float, ttft_s: float) -> None:
    """Remember one bench of this host (one line, appended). A store that cannot be written
    costs the calibration, never the bench: a warning, no error."""
    rec = {"host": host_key(), "artifact": artifact_id, "features": numeric(features),
           "decode": per_token_s, "prefill": ttft_s}
    try:
        with open(_store(), "a", encoding="utf-8") as f:
            f.write(json.dumps(rec, sort_keys=True) + "\n")
    except OSError as e:
        import logging

        logging.getLogger("advisor").warning("this bench is not remembered for later "
                                             "predictions: %s", e)


def _solve(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Non-negative least squares of x @ c ~ y on the relative error, by dropping the terms
    that come out negative and solving again (three terms: at most three rounds)."""
    a = x / y[:, None]
    keep = list(range(x.shape[1]))
    while keep:
        sol, *_ = np.linalg.lstsq(a[:, keep], np.ones_like(y), rcond=None)
        if (sol >= 0).all():
            out = np.zeros(x.shape[1])
            out[keep] = sol
            return out
        keep = [k for k, v in zip(keep, sol, strict=True) if v >= 0] if (sol > 0).any() else []
    return np.zeros(x.shape[1])


@dataclass(frozen=True)
class HostFit:
    coefficients: np.ndarray
    terms: tuple[str, ...]
    benches: int
    band: tuple[float, float] | None  # measured / predicted, leave-one-out over the benches

    def seconds(self, features: dict[str, float]) -> float:
        return float(np.dot(self.coefficients, [features[t] for t in self.terms]))


def fit(test: str, recs: list[dict[str, Any]]) -> HostFit | None:
    terms = _TERMS[test]
    rows = [r for r in recs if all(t in r["features"] for t in terms)
            and isinstance(r.get(test), (int, float)) and r[test] > 0]
    if len(rows) < MIN_RECORDS:
        return None
    x = np.array([[float(r["features"][t]) for t in terms] for r in rows])
    y = np.array([float(r[test]) for r in rows])
    coef = _solve(x, y)
    if not coef.any():
        return None
    ratios = []
    for i in range(len(rows)):
        rest = np.arange(len(rows)) != i
        c = _solve(x[rest], y[rest])
        if c.any():
            ratios.append(y[i] / float(x[i] @ c))
    band = (min(ratios), max(ratios)) if len(ratios) >= 3 else None
    return HostFit(coef, terms, len(rows), band)


_FITS: dict[tuple[Any, ...], dict[str, HostFit | None]] = {}


def _fitted(version: tuple[str, int, int] | None, exclude: str | None,
            key: str | None) -> dict[str, HostFit | None]:
    """Both phases' fits to one version of the store without `exclude`, computed once."""
    cache_key = (version, exclude, key)
    if cache_key not in _FITS:
        recs = [r for r in records(key) if r.get("artifact") != exclude]
        if len(_FITS) > 64:
            _FITS.clear()
        _FITS[cache_key] = {test: fit(test, recs) for test in _TERMS}
    return _FITS[cache_key]


def _rescaled(test: str, recs: list[dict[str, Any]], features: dict[str, float]) -> float | None:
    """One bench: the roofline scaled by that bench's measured / roofline ratio."""
    key = f"roofline_{test}"
    rows = [r for r in recs if r["features"].get(key) and isinstance(r.get(test), (int, float))]
    if not rows or not features.get(key):
        return None
    return float(features[key] * np.median([r[test] / r["features"][key] for r in rows]))


Prediction = tuple[float, tuple[float, float] | None, int, str]


def _ratios(version: tuple[str, int, int] | None, exclude: str | None, key: str,
            kernels_version: tuple[int, int] | None) -> dict[str, list[float]]:
    """phase -> measured / kernel-sum ratios of the benches of artifacts other than `exclude`
    whose every type was timed (computed once per version of both stores)."""
    from advisor.calibration import kernels

    cache_key = ("ratios", version, exclude, key, kernels_version)
    if cache_key not in _RATIOS:
        out: dict[str, list[float]] = {t: [] for t in _TERMS}
        for r in records(key):
            if r.get("artifact") == exclude:
                continue
            for test, s in kernels.seconds(r["features"], key).items():
                if isinstance(r.get(test), (int, float)) and r[test] > 0 and s > 0:
                    out[test].append(float(r[test]) / s)
        if len(_RATIOS) > 64:
            _RATIOS.clear()
        _RATIOS[cache_key] = out
    return _RATIOS[cache_key]


_RATIOS: dict[tuple[Any, ...], dict[str, list[float]]] = {}


def _from_kernels(features: dict[str, float], exclude: str | None,
                  key: str) -> dict[str, Prediction]:
    """The kernel-timing sum, scaled by the earlier benches' ratios (see the module's doc)."""
    from advisor.calibration import kernels

    base = kernels.seconds(features, key)
    if not base:
        return {}
    ratios = _ratios(_version(), exclude, key, kernels.store_version())
    out: dict[str, Prediction] = {}
    for test, s in base.items():
        rs = ratios.get(test, [])
        if not rs:
            out[test] = (s, None, 0, "kernels")
            continue
        scale = float(np.median(rs))
        band = None
        if len(rs) >= 3:
            loo = [r / float(np.median(rs[:i] + rs[i + 1:])) for i, r in enumerate(rs)]
            band = (s * scale * min(loo), s * scale * max(loo))
        out[test] = (s * scale, band, len(rs), "kernels")
    return out


def predict(features: dict[str, float], exclude: str | None = None,
            key: str | None = None) -> dict[str, Prediction]:
    """phase -> (seconds, band in seconds, benches used, how), for the phases this host can
    predict: from its kernel timings ("kernels", scaled by its benches of artifacts other than
    `exclude`); else from those benches alone ("benches"): a fit from two on, the roofline
    rescaled by the measured/predicted ratio of one; empty before any."""
    out = _from_kernels(features, exclude, key or host_key())
    recs = [r for r in records(key) if r.get("artifact") != exclude]
    fitted = _fitted(_version(), exclude, key)
    for test in _TERMS:
        if test in out:
            continue
        f = fitted.get(test)
        if f is None or not all(t in features for t in f.terms):
            if len(recs) == 1 and (one := _rescaled(test, recs, features)) is not None:
                out[test] = (one, None, 1, "benches")
            continue
        seconds = f.seconds(features)
        if seconds <= 0:
            continue
        band = (seconds * f.band[0], seconds * f.band[1]) if f.band else None
        out[test] = (seconds, band, f.benches, "benches")
    return out
