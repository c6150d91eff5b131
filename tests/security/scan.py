"""An AST scanner of the product's source: every call resolved to its dotted name through the
file's own imports (`import numpy as np`, `from torch import load`), so an alias does not hide a
call the way it hides one from a text search."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("advisor", "backends", "kernels", "profiles")

# Calls that can make transformers import code from a model directory (or the Hub).
CODE_LOADERS = ("from_pretrained", "from_config", "pipeline")
# Callables that unpickle (or run code) when they open a file; a module listed here is banned
# whole (any attribute of it).
UNPICKLERS = ("torch.load", "torch.serialization.load", "torch.jit.load", "torch.hub.load",
              "torch.package.PackageImporter", "pickle.load", "pickle.loads", "pickle.Unpickler",
              "_pickle", "cPickle", "cloudpickle", "dill", "joblib.load", "pandas.read_pickle",
              "shelve.open", "numpy.lib.format.read_array")
BANNED_MODULES = ("_pickle", "cPickle", "cloudpickle", "dill")


@dataclass(frozen=True)
class Hit:
    path: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what}"


def sources() -> list[Path]:
    return [p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))]


def _aliases(tree: ast.AST) -> dict[str, str]:
    """Local name -> dotted origin, from every import of the file (module level or not)."""
    out: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.asname:
                    out[a.asname] = a.name
                else:
                    top = a.name.split(".")[0]
                    out[top] = top
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                out[a.asname or a.name] = f"{node.module}.{a.name}"
    return out


def dotted(node: ast.AST, aliases: dict[str, str]) -> str | None:
    """`np.load` -> `numpy.load`; None for anything not a chain of names."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(aliases.get(node.id, node.id))
    return ".".join(reversed(parts))


def _keyword_is(call: ast.Call, name: str, value: object) -> bool:
    return any(k.arg == name and isinstance(k.value, ast.Constant) and k.value.value is value
               for k in call.keywords)


def _banned(name: str) -> bool:
    return any(name == b or name.startswith(b + ".") for b in UNPICKLERS)


def remote_code_hits(text: str, path: str = "<src>") -> Iterator[Hit]:
    """Calls of from_pretrained / from_config / pipeline without the literal keyword
    `trust_remote_code=False`."""
    tree = ast.parse(text)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if name in CODE_LOADERS and not _keyword_is(node, "trust_remote_code", False):
            yield Hit(path, node.lineno, f"{ast.unparse(func)}(...) without "
                                         "trust_remote_code=False")


def snippet_hits(text: str, path: str = "<src>") -> Iterator[Hit]:
    """Code the product writes for users (string constants): each `from_pretrained(` line must
    pass trust_remote_code=False too."""
    tree = ast.parse(text)
    prose = {id(n.value) for n in ast.walk(tree)  # docstrings and other bare string statements
             if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in prose:
            for i, line in enumerate(node.value.splitlines()):
                if ".from_pretrained(" in line and "trust_remote_code=False" not in line:
                    yield Hit(path, node.lineno + i, f"written code: {line.strip()}")


def pickle_hits(text: str, path: str = "<src>") -> Iterator[Hit]:
    """Every reference to an unpickling callable (called or not), numpy.load without the literal
    allow_pickle=False, weights_only=False anywhere, an import of a pickling module."""
    tree = ast.parse(text)
    aliases = _aliases(tree)
    seen: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            for m in mods:
                if m.split(".")[0] in BANNED_MODULES or _banned(m):
                    yield Hit(path, node.lineno, f"imports {m}")
        elif isinstance(node, ast.Call):
            if _keyword_is(node, "weights_only", False):
                yield Hit(path, node.lineno, "weights_only=False")
            name = dotted(node.func, aliases)
            if name == "numpy.load" and not _keyword_is(node, "allow_pickle", False):
                yield Hit(path, node.lineno, "numpy.load without allow_pickle=False")
        elif isinstance(node, ast.Attribute | ast.Name) and isinstance(node.ctx, ast.Load):
            name = dotted(node, aliases)
            if name and _banned(name) and id(node) not in seen:
                # only the outermost chain: `dill.loads` once, not again as `dill`
                seen.update(id(n) for n in ast.walk(node))
                yield Hit(path, node.lineno, f"uses {name}")


def scan(check: object) -> list[str]:
    """`check`'s hits over the product's source, as `path:line: what`."""
    out: list[str] = []
    for p in sources():
        rel = str(p.relative_to(REPO))
        out += [str(h) for h in check(p.read_text(encoding="utf-8"), rel)]  # type: ignore
    return out
