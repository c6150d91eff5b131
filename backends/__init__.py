"""Backends: one module per deployment format/runtime, registered by name."""

from __future__ import annotations

import backends.awq  # noqa: F401
import backends.gguf  # noqa: F401
import backends.gptq  # noqa: F401
import backends.rtn  # noqa: F401
from backends.registry import get_backend, names

__all__ = ["get_backend", "names"]
