"""`ModelSpec`: what a model is, read from file headers without loading the weights."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

SCHEMA_VERSION = 1


class Role(str, Enum):
    """What a weight tensor does; quantization rules are written per role."""

    EMBEDDING = "embedding"
    """Token embedding table."""
    LM_HEAD = "lm_head"
    """Output projection to the vocabulary (absent when tied to the embedding)."""
    ATTN_Q = "attn_q"
    ATTN_K = "attn_k"
    ATTN_V = "attn_v"
    ATTN_O = "attn_o"
    ATTN_QKV = "attn_qkv"
    """Fused q/k/v projection (some architectures store it so)."""
    MLP_GATE = "mlp_gate"
    MLP_UP = "mlp_up"
    MLP_DOWN = "mlp_down"
    MLP_GATE_UP = "mlp_gate_up"
    """Fused gate/up projection."""
    NORM = "norm"
    """Normalisation weights and biases: never quantized."""
    OTHER = "other"
    """Anything else (biases, rotary tables, ...): kept as is."""


LINEAR_ROLES = frozenset(
    {
        Role.ATTN_Q, Role.ATTN_K, Role.ATTN_V, Role.ATTN_O, Role.ATTN_QKV,
        Role.MLP_GATE, Role.MLP_UP, Role.MLP_DOWN, Role.MLP_GATE_UP,
    }
)


class SourceFormat(str, Enum):
    """How the model is stored."""

    GGUF = "gguf"
    """A single llama.cpp GGUF file."""
    HF = "hf"
    """A Hugging Face directory: config.json + *.safetensors."""


@dataclass(frozen=True)
class TensorInfo:
    """One stored tensor.

    `shape` is in PyTorch order (out_features, in_features): the last entry is the row size that
    block quantizers work along (GGUF's ne[0]). `canonical` is the llama.cpp name
    (`blk.3.attn_q.weight`), so plans read the same whatever the source format.
    """

    name: str
    canonical: str
    role: Role
    layer: int | None
    shape: tuple[int, ...]
    dtype: str  # source storage type: F32, F16, BF16, Q4_1, ...
    nbytes: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "role", Role(self.role))
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))

    @property
    def n_params(self) -> int:
        return math.prod(self.shape)

    @property
    def row_size(self) -> int:
        return self.shape[-1]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "canonical": self.canonical,
            "role": self.role.value,
            "layer": self.layer,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "nbytes": self.nbytes,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TensorInfo:
        return cls(
            name=d["name"],
            canonical=d["canonical"],
            role=Role(d["role"]),
            layer=d.get("layer"),
            shape=tuple(d["shape"]),
            dtype=d["dtype"],
            nbytes=int(d["nbytes"]),
        )


# Storage types that are not quantized (a source in these is "full precision").
FLOAT_DTYPES = frozenset({"F64", "F32", "F16", "BF16"})


@dataclass(frozen=True)
class ModelSpec:
    """A model's architecture, dimensions and every weight tensor."""

    path: str
    format: SourceFormat
    architecture: str  # llama.cpp arch name: llama, qwen2, gemma, ...
    name: str
    hidden_size: int
    intermediate_size: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    vocab_size: int
    context_length: int
    tied_embeddings: bool
    tensors: tuple[TensorInfo, ...]
    metadata_bytes: int = 0  # GGUF header + key/values (tokenizer included); 0 for HF
    extra: dict[str, Any] = field(default_factory=dict)
    version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        object.__setattr__(self, "format", SourceFormat(self.format))

    @property
    def n_params(self) -> int:
        return sum(t.n_params for t in self.tensors)

    @property
    def source_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)

    def dtype_counts(self) -> dict[str, int]:
        """Parameters per source storage type."""
        counts: Counter[str] = Counter()
        for t in self.tensors:
            counts[t.dtype] += t.n_params
        return dict(counts.most_common())

    @property
    def source_quantization(self) -> str | None:
        """The quantized type most parameters are stored in, or None for a float source.

        A quantized source matters: its reference is the dequantized weights, so re-quantizing to
        the same type looks nearly free. Reports must say so.
        """
        quant = {k: v for k, v in self.dtype_counts().items() if k not in FLOAT_DTYPES}
        if not quant:
            return None
        return max(quant, key=lambda k: quant[k])

    def tensor(self, canonical: str) -> TensorInfo:
        for t in self.tensors:
            if t.canonical == canonical:
                return t
        raise KeyError(canonical)

    def role_counts(self) -> dict[str, int]:
        counts: Counter[str] = Counter()
        for t in self.tensors:
            counts[t.role.value] += t.n_params
        return dict(counts.most_common())

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "path": self.path,
            "format": self.format.value,
            "architecture": self.architecture,
            "name": self.name,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "n_layers": self.n_layers,
            "n_heads": self.n_heads,
            "n_kv_heads": self.n_kv_heads,
            "head_dim": self.head_dim,
            "vocab_size": self.vocab_size,
            "context_length": self.context_length,
            "tied_embeddings": self.tied_embeddings,
            "n_params": self.n_params,
            "source_bytes": self.source_bytes,
            "source_quantization": self.source_quantization,
            "metadata_bytes": self.metadata_bytes,
            "extra": self.extra,
            "tensors": [t.to_dict() for t in self.tensors],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSpec:
        if d.get("version", SCHEMA_VERSION) != SCHEMA_VERSION:
            raise ValueError(f"ModelSpec version {d.get('version')} != {SCHEMA_VERSION}")
        keys = (
            "path architecture name hidden_size intermediate_size n_layers n_heads n_kv_heads "
            "head_dim vocab_size context_length tied_embeddings"
        ).split()
        return cls(
            format=SourceFormat(d["format"]),
            tensors=tuple(TensorInfo.from_dict(t) for t in d["tensors"]),
            metadata_bytes=int(d.get("metadata_bytes", 0)),
            extra=dict(d.get("extra", {})),
            **{k: d[k] for k in keys},
        )
