"""The per-tensor plan space of a GGUF target: which GGML types each tensor may take.

Every candidate is the type llama.cpp really writes for that tensor (`formats.fallback`: Q4_K on
576-wide rows is written as Q5_0, so the space lists Q5_0 once, never a Q4_K that would silently
change); norms and other 1-D tensors stay F32; the embedding and the LM head keep at least the
bits per weight of a floor type (Q6_K by default, after its own fallback). Bytes are
`formats.tensor_bytes` (llama.cpp's ggml_nbytes, before the file's 32-byte padding).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from advisor import formats
from advisor.errors import BadInput
from advisor.modelspec import ModelSpec, Role
from advisor.plan import QuantPlan

SCHEMA_VERSION = 1

DEFAULT_MENU = ("Q2_K", "Q3_K", "Q4_0", "Q4_K", "Q5_0", "Q5_K", "Q6_K", "Q8_0")
"""Types offered without an importance matrix. IQ4_NL is left out: it is as large as Q4_0 and
its quantizer is ~100x slower (0.7 s per 1536x576 matrix on one core), which alone would spend
~80 s of the sensitivity table of the embedded model."""
IMATRIX_MENU = (*DEFAULT_MENU, "IQ4_NL", "IQ4_XS", "IQ3_S")
"""Types offered with an importance matrix (IQ types are tuned for one)."""
DEFAULT_FLOOR = "Q6_K"
FLOOR_ROLES = (Role.EMBEDDING, Role.LM_HEAD)
"""Roles the floor keeps at DEFAULT_FLOOR or above: the output projection, which every token's
whole distribution goes through. The embedding is in it as the head of a tied model; an untied
input embedding (one row read per token) is an ordinary tensor with its measured sensitivity,
as llama.cpp's own presets treat token_embd (see `floored_roles`)."""


def floored_roles(spec: ModelSpec, roles: Iterable[Role] = FLOOR_ROLES) -> tuple[Role, ...]:
    """The roles of `roles` that the floor applies to on `spec`: the embedding only where it is
    also the head (tied). On the untied rotated SmolLM2 at Q4_K_M's size the floored embedding
    cost the search the pick: its best plan measured 0.093 nats against Q4_K_M's 0.061 (2
    windows), whose token_embd is Q4_K."""
    present = {t.role for t in spec.tensors}
    tied = Role.LM_HEAD not in present
    return tuple(r for r in roles if r in present and (r is not Role.EMBEDDING or tied))
FIXED_TYPE = "F32"  # norms and other 1-D tensors: never quantized


@dataclass(frozen=True)
class TensorChoice:
    """One tensor's candidate types, cheapest first, and the bytes of each."""

    name: str
    role: Role
    layer: int | None
    shape: tuple[int, ...]
    types: tuple[str, ...]
    nbytes: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "role", Role(self.role))
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        object.__setattr__(self, "types", tuple(self.types))
        object.__setattr__(self, "nbytes", tuple(int(b) for b in self.nbytes))
        if not self.types or len(self.types) != len(self.nbytes):
            raise ValueError(f"TensorChoice {self.name}: types {self.types} and bytes "
                             f"{self.nbytes} must be non-empty and of equal length")

    @property
    def free(self) -> bool:
        """Whether the search has a choice to make for this tensor."""
        return len(self.types) > 1

    def bytes_of(self, gtype: str) -> int:
        try:
            return self.nbytes[self.types.index(gtype)]
        except ValueError:
            raise BadInput(f"{gtype} is not a candidate of {self.name}",
                           f"use one of {', '.join(self.types)}") from None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role.value, "layer": self.layer,
                "shape": list(self.shape), "types": list(self.types),
                "nbytes": list(self.nbytes)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TensorChoice:
        return cls(d["name"], Role(d["role"]), d.get("layer"), tuple(d["shape"]),
                   tuple(d["types"]), tuple(d["nbytes"]))


@dataclass(frozen=True)
class PlanSpace:
    """Candidate GGML types of every tensor of one model (gguf backend)."""

    model: str
    menu: tuple[str, ...]
    floor: str
    imatrix: bool
    tensors: tuple[TensorChoice, ...]
    version: int = field(default=SCHEMA_VERSION)

    def __post_init__(self) -> None:
        names = [t.name for t in self.tensors]
        if len(set(names)) != len(names):
            raise ValueError("PlanSpace.tensors has duplicate names")

    @property
    def free(self) -> tuple[TensorChoice, ...]:
        return tuple(t for t in self.tensors if t.free)

    def choice(self, name: str) -> TensorChoice:
        for t in self.tensors:
            if t.name == name:
                return t
        raise KeyError(name)

    def complete(self, assignment: Mapping[str, str]) -> dict[str, str]:
        """`assignment` over the free tensors, plus the one type of every fixed tensor.

        Raises BadInput on a missing tensor, an unknown one, or a type that is not a candidate.
        """
        unknown = set(assignment) - {t.name for t in self.tensors}
        if unknown:
            raise BadInput(f"assignment names tensors not in the space: {sorted(unknown)[:3]}",
                           "use the canonical llama.cpp names of the model's tensors")
        out = {}
        for t in self.tensors:
            gtype = assignment.get(t.name, t.types[0] if not t.free else None)
            if gtype is None:
                raise BadInput(f"assignment lacks tensor {t.name}",
                               f"give one of {', '.join(t.types)}")
            t.bytes_of(gtype)  # validates
            out[t.name] = gtype
        return out

    def size(self, assignment: Mapping[str, str]) -> int:
        """Tensor bytes of a plan (fixed tensors included)."""
        full = self.complete(assignment)
        return sum(t.bytes_of(full[t.name]) for t in self.tensors)

    def min_size(self) -> int:
        return sum(t.nbytes[0] for t in self.tensors)

    def max_size(self) -> int:
        return sum(max(t.nbytes) for t in self.tensors)

    def plan(self, assignment: Mapping[str, str], label: str = "") -> QuantPlan:
        options = {"imatrix": True} if self.imatrix else {}
        return QuantPlan("gguf", self.complete(assignment), options=options, label=label)

    def digest(self) -> str:
        body = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(body.encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "model": self.model, "menu": list(self.menu),
                "floor": self.floor, "imatrix": self.imatrix,
                "tensors": [t.to_dict() for t in self.tensors]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PlanSpace:
        if d.get("version", SCHEMA_VERSION) != SCHEMA_VERSION:
            raise ValueError(f"PlanSpace version {d.get('version')} != {SCHEMA_VERSION}")
        return cls(str(d["model"]), tuple(d["menu"]), str(d["floor"]), bool(d["imatrix"]),
                   tuple(TensorChoice.from_dict(t) for t in d["tensors"]))


def _check_menu(menu: Iterable[str], imatrix: bool) -> tuple[str, ...]:
    out = []
    for name in menu:
        t = formats.ggml_type(name)  # BadInput listing the known types
        if not t.is_quantized and t.name not in ("F16", "BF16", "F32"):
            raise BadInput(f"{t.name} cannot be a quantization candidate", "use a GGML type")
        if t.requires_imatrix and not imatrix:
            raise BadInput(f"{t.name} needs an importance matrix",
                           "compute one (backends.gguf.imatrix) or drop it from the menu")
        if t.name not in out:
            out.append(t.name)
    if not out:
        raise BadInput("the candidate menu is empty", f"e.g. {', '.join(DEFAULT_MENU)}")
    return tuple(out)


def _written(gtype: str, row: int) -> str | None:
    """The type llama.cpp writes for `gtype` on rows of `row`; None when it would refuse."""
    try:
        return formats.fallback(gtype, row)
    except BadInput:
        return None


def tensor_candidates(shape: Sequence[int], role: Role, menu: Sequence[str],
                      floor: str = DEFAULT_FLOOR,
                      floor_roles: Iterable[Role] = FLOOR_ROLES) -> tuple[str, ...]:
    """Distinct types actually written for `menu` on a tensor of `shape`, cheapest first."""
    if role in (Role.NORM, Role.OTHER) or len(shape) < 2:
        return (FIXED_TYPE,)
    row = int(shape[-1])
    types = {w for w in (_written(m, row) for m in menu) if w is not None}
    if role in set(floor_roles):
        floor_type = _written(floor, row) or "F16"
        min_bpw = formats.ggml_type(floor_type).bits_per_weight
        types = {t for t in types if formats.ggml_type(t).bits_per_weight >= min_bpw}
        types.add(floor_type)
    if not types:
        raise BadInput(f"no type of the menu fits rows of {row} weights",
                       "add a 32-block type (Q4_0, Q8_0) or F16 to the menu")
    return tuple(sorted(types, key=lambda t: (formats.tensor_bytes(t, shape), t)))


def gguf_plan_space(spec: ModelSpec, menu: Sequence[str] | None = None, *, imatrix: bool = False,
                    floor: str = DEFAULT_FLOOR,
                    floor_roles: Iterable[Role] = FLOOR_ROLES) -> PlanSpace:
    """The plan space of `spec` for llama.cpp: per tensor, the candidates of `menu` (default
    DEFAULT_MENU, or IMATRIX_MENU when an importance matrix will be used)."""
    menu = _check_menu(menu if menu is not None else (IMATRIX_MENU if imatrix else DEFAULT_MENU),
                       imatrix)
    floor = formats.ggml_type(floor).name
    roles = floored_roles(spec, floor_roles)
    choices = []
    for t in spec.tensors:
        types = tensor_candidates(t.shape, t.role, menu, floor, roles)
        choices.append(TensorChoice(t.canonical, t.role, t.layer, t.shape, types,
                                    tuple(formats.tensor_bytes(g, t.shape) for g in types)))
    return PlanSpace(spec.path, menu, floor, imatrix, tuple(choices))
