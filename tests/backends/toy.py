"""A toy backend, as a newcomer would add one: this one file plus one `declare` line
(tests/conftest.py declares it for the whole suite, as backends/__init__.py declares the real
ones). It is round-to-nearest under another name, writing W8A16 only (its declaration says so):
nothing else of the project names it, yet `recommend` offers it, `quantize --backend toy` writes
it and the conformance suite runs it."""

from __future__ import annotations

from backends.registry import register
from backends.rtn import RtnBackend


@register("toy")
class ToyBackend(RtnBackend):
    """compressed-tensors W8A16 checkpoints by round-to-nearest."""

    name = "toy"
