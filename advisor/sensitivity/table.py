"""`SensitivityTable`: per tensor and candidate type, the KL cost and the bytes; its disk cache.

The surrogate of a plan is the sum of its tensors' costs (each measured with the rest of the model
at reference precision), so it is a *predicted* KL even where every term was measured.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from advisor.errors import BadInput
from advisor.figures import Figure, Origin
from advisor.space.choices import PlanSpace

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
ALGORITHM_VERSION = 1  # part of the cache key: bump when the numbers would change
NATS = "nats"  # unit of the KL figures


@dataclass(frozen=True)
class SensitivityConfig:
    """How much text the sensitivity sees and how many candidates it measures.

    Windows of `n_ctx` tokens of the calibration text, `n_windows` of them, KL scored from
    position `first_scored` (-1: n_ctx // 2, as llama-perplexity scores the second half).
    `exhaustive=False` measures one candidate per tensor (the cheapest: the largest, best resolved
    KL) and scales it to the others by their mean squared output error on the same tokens; True
    measures every candidate (~4.5x the time on the embedded model).

    `anchors` > 0 measures end-to-end KL on that many decoder layers only (evenly spaced, the
    first and the last included): a tensor of another layer costs its output error times the
    KL-per-error gain of its role, interpolated (log-linear in the layer index) between the
    anchors. Each measurement replays the layers after its own, so measuring every layer
    (`anchors=0`) costs depth x parameters, anchors a fixed number of replays: time linear in the
    parameters (advisor.sensitivity.measure has the figures). The embedding and an untied head
    are always measured. `row_sample` k > 1 (streamed sweeps only) estimates the candidates'
    output errors from every k-th row of each tensor, so only the measured candidates are
    quantized whole (advisor.sensitivity.stream.sampled_rows).
    """

    n_ctx: int = 32
    n_windows: int = 2
    first_scored: int = -1
    exhaustive: bool = False
    anchors: int = 0
    row_sample: int = 1
    version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if not isinstance(self.n_ctx, int) or self.n_ctx < 4:
            raise ValueError(f"SensitivityConfig.n_ctx={self.n_ctx!r}; expected an integer >= 4")
        if not isinstance(self.n_windows, int) or self.n_windows < 1:
            raise ValueError(f"SensitivityConfig.n_windows={self.n_windows!r}; expected >= 1")
        if not isinstance(self.first_scored, int) or not -1 <= self.first_scored < self.n_ctx:
            raise ValueError(f"SensitivityConfig.first_scored={self.first_scored!r}; expected -1 "
                             f"or 0 <= it < n_ctx={self.n_ctx}")
        if not isinstance(self.anchors, int) or self.anchors < 0 or self.anchors == 1:
            raise ValueError(f"SensitivityConfig.anchors={self.anchors!r}; expected 0 (every "
                             "layer) or at least 2")
        if not isinstance(self.row_sample, int) or self.row_sample < 1:
            raise ValueError(f"SensitivityConfig.row_sample={self.row_sample!r}; expected >= 1")
        if self.anchors and self.exhaustive:
            raise ValueError("SensitivityConfig: exhaustive measures every candidate of every "
                             "layer; anchors must be 0 with it")

    @property
    def scored_from(self) -> int:
        return self.n_ctx // 2 if self.first_scored < 0 else self.first_scored

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SensitivityConfig:
        if d.get("version", SCHEMA_VERSION) != SCHEMA_VERSION:
            raise ValueError(f"SensitivityConfig version {d.get('version')} != {SCHEMA_VERSION}")
        return cls(int(d["n_ctx"]), int(d["n_windows"]), int(d["first_scored"]),
                   bool(d["exhaustive"]), int(d.get("anchors", 0)),
                   int(d.get("row_sample", 1)))


@dataclass(frozen=True)
class SensitivityTable:
    """cost[tensor][type]: mean KL (nats per scored token) vs the reference when only that tensor
    is stored in that type; `measured[tensor]` lists the types whose cost was measured (the rest
    were scaled from them); bytes come from the plan space."""

    space: PlanSpace
    costs: dict[str, dict[str, float]]
    measured: dict[str, tuple[str, ...]]
    config: SensitivityConfig
    model_id: str
    text_sha256: str
    imatrix_sha256: str | None
    n_tokens: int
    n_scored: int
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)
    version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        for t in self.space.tensors:
            missing = set(t.types) - set(self.costs.get(t.name, {}))
            if missing:
                raise ValueError(f"SensitivityTable lacks the cost of {t.name} in {missing}")

    def cost(self, name: str, gtype: str) -> float:
        try:
            return self.costs[name][gtype]
        except KeyError:
            raise BadInput(f"no sensitivity for {name} in {gtype}",
                           "measure a table whose plan space offers that type") from None

    def figure(self, name: str, gtype: str) -> Figure:
        """The cost as a labelled figure: measured, or predicted when scaled."""
        origin = Origin.MEASURED if gtype in self.measured.get(name, ()) else Origin.PREDICTED
        return Figure(self.cost(name, gtype), NATS, origin)

    def surrogate(self, assignment: Mapping[str, str]) -> float:
        """Sum of the per-tensor costs of a plan (fixed tensors included)."""
        full = self.space.complete(assignment)
        return sum(self.cost(n, g) for n, g in full.items())

    def surrogate_figure(self, assignment: Mapping[str, str]) -> Figure:
        return Figure(self.surrogate(assignment), NATS, Origin.PREDICTED)

    def items(self) -> list[tuple[str, list[tuple[str, int, float]]]]:
        """Per tensor, (type, bytes, cost) of each candidate, for the allocators."""
        return [(t.name, [(g, b, self.costs[t.name][g]) for g, b in zip(t.types, t.nbytes)])
                for t in self.space.tensors]

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version, "space": self.space.to_dict(), "costs": self.costs,
            "measured": {k: list(v) for k, v in self.measured.items()},
            "config": self.config.to_dict(), "model_id": self.model_id,
            "text_sha256": self.text_sha256, "imatrix_sha256": self.imatrix_sha256,
            "n_tokens": self.n_tokens, "n_scored": self.n_scored, "seconds": self.seconds,
            "cost_unit": NATS, "extra": self.extra,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SensitivityTable:
        if d.get("version", SCHEMA_VERSION) != SCHEMA_VERSION:
            raise ValueError(f"SensitivityTable version {d.get('version')} != {SCHEMA_VERSION}")
        return cls(
            space=PlanSpace.from_dict(d["space"]),
            costs={n: {g: float(c) for g, c in v.items()} for n, v in d["costs"].items()},
            measured={n: tuple(v) for n, v in d["measured"].items()},
            config=SensitivityConfig.from_dict(d["config"]),
            model_id=str(d["model_id"]), text_sha256=str(d["text_sha256"]),
            imatrix_sha256=d.get("imatrix_sha256"), n_tokens=int(d["n_tokens"]),
            n_scored=int(d["n_scored"]), seconds=float(d["seconds"]),
            extra=dict(d.get("extra", {})),
        )


def cache_key(model_id: str, text_sha: str, space: PlanSpace, imatrix_sha: str | None,
              config: SensitivityConfig) -> str:
    """Model identity, text, candidate menu (the whole space), imatrix and config."""
    body = json.dumps({"algorithm": ALGORITHM_VERSION, "model": model_id, "text": text_sha,
                       "space": space.digest(), "menu": list(space.menu),
                       "imatrix": imatrix_sha, "config": config.to_dict()}, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()[:24]


def cache_path(root: Path, key: str) -> Path:
    return root / "sensitivity" / f"{key}.json"


def load_cached(path: Path) -> SensitivityTable | None:
    if not path.is_file():
        return None
    try:
        return SensitivityTable.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError) as e:
        log.warning("ignoring unreadable sensitivity cache %s: %s", path, e)
        return None


def save_cached(path: Path, table: SensitivityTable) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(table.to_dict(), sort_keys=True))
        os.replace(tmp, path)
    except OSError as e:
        log.warning("cannot cache the sensitivity table in %s: %s", path, e)
