"""Explicit backend registry: a decorator writes into one dict; `backends/__init__.py` imports
each backend module by name so its decorator runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from advisor.errors import BadInput
from backends.base import Backend

_REGISTRY: dict[str, type] = {}
T = TypeVar("T", bound=type)


def register(name: str) -> Callable[[T], T]:
    def deco(cls: T) -> T:
        if name in _REGISTRY:
            raise ValueError(f"backend {name!r} registered twice")
        _REGISTRY[name] = cls
        return cls

    return deco


# Backends whose modules import torch and transformers: imported on first use, so that every
# `advisor` process (and the bench child, whose baseline RSS is measured) does not pay for them.
LAZY: dict[str, str] = {"rtn": "backends.rtn", "gptq": "backends.gptq", "awq": "backends.awq",
                        "fp8": "backends.fp8", "smoothquant": "backends.smoothquant",
                        "nf4": "backends.nf4"}


def names() -> list[str]:
    return sorted(set(_REGISTRY) | set(LAZY))


def get_backend(name: str) -> Backend:
    key = name.lower()
    if key not in _REGISTRY and key in LAZY:
        import importlib

        importlib.import_module(LAZY[key])
    cls = _REGISTRY.get(key)
    if cls is None:
        raise BadInput(f"unknown backend {name!r}", f"known backends: {', '.join(names())}")
    backend: Backend = cls()
    return backend
