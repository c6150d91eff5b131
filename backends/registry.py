"""The backend registry: one `declare` line per backend (in `backends/__init__.py`) names its
module and the formats it writes; the module's class registers itself with `@register(name)`
when the module is first imported (`get_backend`). Every table of who writes which scheme is
derived from the declarations here, never typed a second time:

    writers("W4A16")       -> ("rtn", "gptq", "awq")   every backend that writes the scheme
    default_writer(s)      -> the first declared writer (used when the user names only a format)
    auto_writer(s)         -> the writer `recommend --backend auto` realizes (declared `auto=`)
    schemes_of("gptq")     -> ("W4A16", "W8A16")
    bits_scheme("fp8", 8)  -> "W8A8-FP8"             `quantize --backend B --bits N`

Declaring imports nothing: a backend's module (torch, transformers, llama.cpp) is imported on
its first use, so that every `advisor` process (and the bench child, whose baseline RSS is
measured) does not pay for all of them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from advisor.errors import BadInput
from advisor.formats.ggml import GGUF_ALL
from advisor.formats.schemes import WEIGHT_BITS
from backends.base import Backend


@dataclass(frozen=True)
class Entry:
    """One declared backend."""

    name: str
    module: str
    formats: tuple[str, ...]
    """`GGUF_ALL`, or the HF schemes it writes (advisor.formats.Scheme values)."""
    auto: tuple[str, ...] = ()
    """Schemes for which `recommend --backend auto` realizes this writer rather than the first
    declared one (the measured reason goes in the declaring line's comment)."""
    int_mix: bool = False
    """Writes the searched per-group int4/int8/float mixes (W4A16/W8A16/F16 per fused group)."""

    def __post_init__(self) -> None:
        if not self.formats:
            raise ValueError(f"backend {self.name!r} declares no format")
        stray = set(self.auto) - set(self.formats)
        if stray:
            raise ValueError(f"backend {self.name!r}: auto={sorted(stray)} not among its formats "
                             f"{list(self.formats)}")

    @property
    def is_gguf(self) -> bool:
        return GGUF_ALL in self.formats


_ENTRIES: dict[str, Entry] = {}
_CLASSES: dict[str, type] = {}
T = TypeVar("T", bound=type)


def declare(name: str, module: str, formats: tuple[str, ...], *, auto: tuple[str, ...] = (),
            int_mix: bool = False) -> Entry:
    """Add a backend (its module is imported on first use); ValueError when the name is taken."""
    key = name.lower()
    if key in _ENTRIES:
        raise ValueError(f"backend {name!r} declared twice")
    entry = Entry(key, module, tuple(formats), tuple(auto), int_mix)
    _ENTRIES[key] = entry
    return entry


def undeclare(name: str) -> None:
    """Remove a declared backend (tests that declare a toy backend clean up with this)."""
    _ENTRIES.pop(name, None)
    _CLASSES.pop(name, None)


def register(name: str) -> Callable[[T], T]:
    """Class decorator in a backend's module: the class `get_backend(name)` instantiates."""

    def deco(cls: T) -> T:
        if name not in _ENTRIES:
            raise ValueError(f"backend class {cls.__name__} registers {name!r}, which no declare() "
                             "line in backends/__init__.py names")
        if name in _CLASSES and _CLASSES[name] is not cls:
            raise ValueError(f"backend {name!r} registered twice")
        _CLASSES[name] = cls
        return cls

    return deco


def entries() -> tuple[Entry, ...]:
    """Every declared backend, in declaration order (GGUF first)."""
    return tuple(_ENTRIES.values())


def names() -> list[str]:
    return list(_ENTRIES)


def entry(name: str) -> Entry:
    found = _ENTRIES.get(name.lower())
    if found is None:
        raise BadInput(f"unknown backend {name!r}", f"known backends: {', '.join(names())}")
    return found


def get_backend(name: str) -> Backend:
    """An instance of the backend `name` (its module imported on first use)."""
    e = entry(name)
    if e.name not in _CLASSES:
        importlib.import_module(e.module)
    cls = _CLASSES.get(e.name)
    if cls is None:
        raise ValueError(f"module {e.module} registers no class for backend {e.name!r} "
                         f"(@register({e.name!r}) missing)")
    backend: Backend = cls()
    return backend


def hf_backends() -> tuple[str, ...]:
    """Every backend that writes HF checkpoints (all but GGUF), in declaration order."""
    return tuple(e.name for e in entries() if not e.is_gguf)


def schemes_of(name: str) -> tuple[str, ...]:
    """The HF schemes a backend writes (empty for GGUF)."""
    e = entry(name)
    return () if e.is_gguf else e.formats


def writers(scheme: str) -> tuple[str, ...]:
    """Every backend that writes `scheme`, in declaration order."""
    return tuple(e.name for e in entries() if scheme in e.formats)


def default_writer(scheme: str) -> str | None:
    """The backend that writes `scheme` when the user names only the format: the first
    declared."""
    found = writers(scheme)
    return found[0] if found else None


def auto_writer(scheme: str) -> str | None:
    """The writer `recommend --backend auto` realizes for `scheme`."""
    preferred = [e.name for e in entries() if scheme in e.auto]
    return preferred[0] if preferred else default_writer(scheme)


def int_mix_writers() -> tuple[str, ...]:
    return tuple(e.name for e in entries() if e.int_mix)


def bits_scheme(name: str, bits: int) -> str | None:
    """The scheme backend `name` writes at `bits` weight bits (`quantize --backend B --bits N`),
    or None."""
    return next((s for s in schemes_of(name) if WEIGHT_BITS.get(s) == bits), None)
