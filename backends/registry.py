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


def names() -> list[str]:
    return sorted(_REGISTRY)


def get_backend(name: str) -> Backend:
    cls = _REGISTRY.get(name.lower())
    if cls is None:
        raise BadInput(f"unknown backend {name!r}", f"known backends: {', '.join(names())}")
    backend: Backend = cls()
    return backend
