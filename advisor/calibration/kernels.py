"""This host's llama.cpp kernel timings per GGML type (issue 18, the host's per-token target):
the store, the synthetic shape, and the sum over a plan's tensors. The timing itself is
`advisor.measure.latency.kernels` (it runs llama.cpp through the GGUF backend).

The host's benches alone cannot tell the types apart: the presets of one model share its layers
and FLOPs, and on a CPU a weight of Q6_K costs more time than its bytes say (a 2-core x86 VM at
SmolLM2-135M's shape: Q6_K 0.046 ns per weight, Q8_0 0.044, Q4_K 0.030). So before a bench,
llama.cpp times a synthetic model per type at about the model's layer shape (`shape_for`), once
per host, shape and type, kept in the cache (`host-kernels.json`): seconds per weight of a
decode step and of a prompt token, and the attention per layer, head and context token.

A plan's prediction is then the sum over its tensors (estimate's `w:<TYPE>` / `head:<TYPE>`
features) plus the attention, and `advisor.calibration.host` scales it by what this host's
earlier benches measured against the same sum.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

STORE = "host-kernels.json"
BLOCK = 256
MAX_HIDDEN = 1024


@dataclass(frozen=True)
class Shape:
    """The synthetic layer: hidden and FFN width, heads and head size."""

    hidden: int
    ffn: int
    heads: int
    kv_heads: int
    head_dim: int

    @property
    def key(self) -> str:
        return f"h{self.hidden}f{self.ffn}q{self.heads}k{self.kv_heads}d{self.head_dim}"

    @property
    def layer_weights(self) -> int:
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        return self.hidden * (2 * q + 2 * kv) + 3 * self.hidden * self.ffn


def _up(n: float) -> int:
    return max(BLOCK, -(-int(n) // BLOCK) * BLOCK)


def shape_for(features: dict[str, float]) -> Shape | None:
    """The synthetic shape for a model with estimate's features (None without them)."""
    try:
        hidden, ffn = float(features["hidden"]), float(features["ffn"])
        heads, kv, hd = (int(features[k]) for k in ("n_heads", "n_kv_heads", "head_dim"))
    except (KeyError, ValueError):
        return None
    if min(hidden, ffn, heads, kv, hd) <= 0 or heads % kv:
        return None
    scale = min(1.0, MAX_HIDDEN / hidden)
    h = _up(hidden * scale)
    group = heads // kv
    q_heads = max(group, (h // hd) // group * group)  # whole GQA groups, about the width
    return Shape(h, _up(ffn * scale), q_heads, q_heads // group, hd)


def _store() -> Path:
    from advisor.artifact.cache import cache_root

    return cache_root() / STORE


@lru_cache(maxsize=4)
def _read(path: str, mtime_ns: int, size: int) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def store_version() -> tuple[int, int] | None:
    """The store's modification time and size (None when there is none)."""
    try:
        return _version(_store())
    except OSError:
        return None


def _entry(data: dict[str, Any], host: str, shape: Shape) -> dict[str, Any]:
    """One host and shape's timings, numbers only: the store is the cache's file, and a torn or
    edited one must cost the calibration, never an estimate (a traceback)."""
    by_host = data.get(host)
    entry = by_host.get(shape.key) if isinstance(by_host, dict) else None
    if not isinstance(entry, dict):
        return {}
    out: dict[str, Any] = {}
    for phase in ("decode", "prefill"):
        rates = entry.get(phase)
        if isinstance(rates, dict):
            out[phase] = {str(t): float(v) for t, v in rates.items()
                          if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0}
    att = entry.get("attention")
    if isinstance(att, (int, float)) and not isinstance(att, bool) and att >= 0:
        out["attention"] = float(att)
    return out


def table(host: str, shape: Shape) -> dict[str, Any]:
    """The stored timings of `shape` on `host` ({} when none)."""
    version = store_version()
    return _entry(_read(str(_store()), *version), host, shape) if version else {}


def types_of(features: dict[str, float]) -> set[str]:
    """The GGML types a plan's features name."""
    return {k.split(":", 1)[1] for k in features if k.startswith(("w:", "head:"))}


def untimed(features: dict[str, float], host: str) -> set[str]:
    """What `host` (advisor.calibration.host.host_key()) has no timings of at a plan's shape:
    its GGML types, and "attention"; empty when the features do not say what to time."""
    shape, types = shape_for(features), types_of(features)
    if shape is None or not types:
        return set()
    have = table(host, shape)
    return ({t for t in types if t not in have.get("decode", {})}
            | ({"attention"} if "attention" not in have else set()))


def save(host: str, shape: Shape, new: dict[str, Any]) -> None:
    """Add timings (`advisor.measure.latency.kernels.measure`) to the store, replacing the file
    whole. A store that cannot be written costs the calibration, never the bench: a warning."""
    path, version = _store(), store_version()
    data = dict(_read(str(path), *version)) if version else {}
    entry = _entry(data, host, shape)
    for phase in ("decode", "prefill"):
        entry[phase] = {**entry.get(phase, {}), **new.get(phase, {})}
    if "attention" in new:
        entry["attention"] = new["attention"]
    others = data.get(host)
    data[host] = {**(others if isinstance(others, dict) else {}), shape.key: entry}
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".host-kernels-")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except OSError as e:
        log.warning("kernel timings are not kept for later predictions: %s", e)


def _version(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_mtime_ns, st.st_size


def seconds(features: dict[str, float], host: str) -> dict[str, float]:
    """phase -> seconds predicted from this host's kernel timings alone, for the phases whose
    every type was timed: decode = sum of weights x time per weight of their type + attention
    per layer, head and context token; prefill = prompt tokens x the layers' weights x prefill
    time per weight and token + one step of the head."""
    shape = shape_for(features)
    if shape is None:
        return {}
    entry = table(host, shape)
    dec, pre, att = entry.get("decode", {}), entry.get("prefill", {}), entry.get("attention")
    layers = {k[2:]: v for k, v in features.items() if k.startswith("w:")}
    head = {k[5:]: v for k, v in features.items() if k.startswith("head:")}
    if not layers or att is None or not set(layers) | set(head) <= set(dec):
        return {}
    head_s = sum(n * dec[t] for t, n in head.items())
    out = {"decode": sum(n * dec[t] for t, n in layers.items()) + head_s
           + float(features.get("attention_units", 0.0)) * att}
    if set(layers) <= set(pre) and features.get("prompt_tokens"):
        out["prefill"] = (features["prompt_tokens"] * sum(n * pre[t] for t, n in layers.items())
                          + head_s)
    return out
