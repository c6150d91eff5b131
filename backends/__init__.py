"""Backends: one module per deployment format/runtime, registered by name."""

from __future__ import annotations

from backends.registry import get_backend, names

__all__ = ["get_backend", "names"]
