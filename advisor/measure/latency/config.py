"""What a benchmark runs: the artifact to load and the workload to put on it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from advisor.estimate import Workload

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class BenchWorkload:
    """Closed-loop load: `concurrency` streams, each sends its next request when the last is
    answered, until `n_requests` are answered; each stream first answers `warmup` requests that
    are not counted (first-call allocations, page faults of the weights).

    Prompts are `prompt_tokens` real tokens of the evaluation text, a different slice per request;
    every request decodes exactly `new_tokens` tokens greedily.
    """

    prompt_tokens: int = 128
    new_tokens: int = 32
    concurrency: int = 1
    n_requests: int = 8
    warmup: int = 1
    version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        for name in ("prompt_tokens", "new_tokens", "concurrency", "n_requests"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"BenchWorkload.{name}={value!r}; expected an integer >= 1")
        if not isinstance(self.warmup, int) or self.warmup < 0:
            raise ValueError(f"BenchWorkload.warmup={self.warmup!r}; expected an integer >= 0")

    @property
    def workload(self) -> Workload:
        return Workload(prompt_tokens=self.prompt_tokens, new_tokens=self.new_tokens,
                        concurrency=self.concurrency)

    @property
    def n_ctx(self) -> int:
        """Context each stream's runner needs: the prompt and every new token but the last."""
        return self.prompt_tokens + self.new_tokens

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BenchWorkload:
        if d.get("version", SCHEMA_VERSION) != SCHEMA_VERSION:
            raise ValueError(f"BenchWorkload version {d.get('version')} != {SCHEMA_VERSION}")
        keys = ("prompt_tokens", "new_tokens", "concurrency", "n_requests", "warmup")
        return cls(**{k: int(d[k]) for k in keys if k in d})


@dataclass(frozen=True)
class BenchTarget:
    """The artifact to load through `backends.get_backend(backend).load()`; "" means gguf (a
    GGUF file or an artifact directory)."""

    path: str
    backend: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", str(self.path))

    def size_bytes(self) -> int:
        p = Path(self.path)
        if p.is_dir():
            return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
        return p.stat().st_size

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BenchTarget:
        return cls(path=str(d["path"]), backend=str(d.get("backend", "")))
