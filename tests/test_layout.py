"""The house rules of the README's map, read from the code's own imports (every import, at module
level or inside a function): no import cycle, no stage importing a stage that runs after it,
advisor/ reaching backends only through their faces, pure kernels, small files."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("advisor", "backends", "kernels", "profiles")
# The pipeline's stages in the order they run (README: the map). A module of a stage may import
# modules of its own stage and of earlier ones, never of a later one.
STAGES = ("advisor.inspect", "advisor.probe", "advisor.space", "advisor.estimate",
          "advisor.sensitivity", "advisor.search", "advisor.realize", "advisor.measure",
          "advisor.report")
FACES = ("backends", "backends.base", "backends.registry", "backends.gguf", "backends.hf")
MAX_LINES = 500
MAX_LOOSE = 10


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> dict[str, Path]:
    return {_module(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _imports(path: Path, module: str, known: set[str]) -> set[str]:
    """Project modules `path` imports (`from a.b import c` counts a.b.c when that is a module)."""
    out: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known}
    return {m for m in out if m.split(".")[0] in PACKAGES and m in known}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    sources = _sources()
    known = set(sources)
    return {m: _imports(p, m, known) for m, p in sources.items()}


def _stage(module: str) -> int | None:
    for i, s in enumerate(STAGES):
        if module == s or module.startswith(s + "."):
            return i
    return None


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of `graph`, or None (a package's __init__ re-exporting its own modules
    is not a cycle of the house)."""
    def edges(m: str) -> list[str]:
        return sorted(d for d in graph.get(m, ()) if not m.startswith(d + "."))

    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for d in edges(m):
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if d not in state and (found := visit(d)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_no_import_cycle(graph: dict[str, set[str]]) -> None:
    cycle = _cycle(graph)
    assert cycle is None, " -> ".join(cycle or [])


def test_no_stage_imports_a_later_stage(graph: dict[str, set[str]]) -> None:
    bad = [f"{m} -> {d}" for m, deps in graph.items() for d in deps
           if _stage(m) is not None and _stage(d) is not None and _stage(d) > _stage(m)]
    assert not bad, bad


def test_advisor_reaches_backends_through_their_faces(graph: dict[str, set[str]]) -> None:
    bad = [f"{m} -> {d}" for m, deps in graph.items() if m.startswith("advisor")
           for d in deps if d.startswith("backends") and d not in FACES]
    assert not bad, bad


def test_kernels_and_profiles_import_nothing_of_the_house(graph: dict[str, set[str]]) -> None:
    bad = [f"{m} -> {d}" for m, deps in graph.items() if m.split(".")[0] in ("kernels", "profiles")
           for d in deps if d.split(".")[0] != m.split(".")[0]]
    assert not bad, bad


def test_files_stay_small_and_the_top_of_advisor_holds_few_loose_modules() -> None:
    long = {str(p.relative_to(ROOT)): n for p in _sources().values()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, long
    loose = [p.name for p in (ROOT / "advisor").glob("*.py") if p.name != "__init__.py"]
    assert len(loose) <= MAX_LOOSE, sorted(loose)


def test_the_checker_sees_a_back_arrow_and_a_cycle() -> None:
    """The rules above can fail: a later stage is told apart, a cycle is found."""
    assert _stage("advisor.measure.stage") > _stage("advisor.sensitivity.measure")  # type: ignore
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"p": {"p.x"}, "p.x": {"p"}}) is None  # a face re-exporting its module
