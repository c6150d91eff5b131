"""Backends: one module per deployment format/runtime, registered by name (the HF checkpoint
backends lazily: registry.LAZY)."""

from __future__ import annotations

import backends.gguf  # noqa: F401
from backends.registry import get_backend, names

__all__ = ["get_backend", "names"]
