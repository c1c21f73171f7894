"""The package's layout holds: no import cycle, no import up a layer.

The package is laid out by concern (``_core``, ``_kernels``, ``_profile``,
``_calibrate``, ``_interop``, ``testing``; docs/architecture.rst).  These
tests read the sources' imports (Python imports, at module level or inside
functions alike; ``cimport`` is the compiler's and is not counted) and hold
them to the layering, so that a change that breaks it fails here instead of
in a newcomer's head.
"""

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "breakeven"
# `from a.b import c` and `import a.b` in a .pyx (Python-level imports only).
PYX_IMPORT = re.compile(
    r"^\s*(?:from\s+([\w.]+)\s+import\s+([\w, ()]+)|import\s+([\w.]+))", re.M)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))
            + sorted(PACKAGE.rglob("*.pyx"))}


def _imported(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules that ``name`` imports."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    targets: list[str] = []
    if path.suffix == ".py":
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets += [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = package[:len(package) - node.level + 1] if node.level else []
                head = ".".join(base + ([node.module] if node.module else []))
                targets += [head] + [f"{head}.{a.name}" for a in node.names]
    else:
        text = re.sub(r'"""(?:.|\n)*?"""', "", path.read_text())
        for m in PYX_IMPORT.finditer(text):
            if m.group(1):
                names = m.group(2).replace("(", "").replace(")", "").split(",")
                targets += [m.group(1)] + [f"{m.group(1)}.{n.strip()}" for n in names
                                           if n.strip()]
            else:
                targets.append(m.group(3))
    return {t for t in targets if t in known and t != name}


def _graph() -> dict[str, set[str]]:
    known = _modules()
    return {name: _imported(name, path, known) for name, path in known.items()}


def test_the_sources_are_found():
    graph = _graph()
    assert {"breakeven", "breakeven._core.engine", "breakeven._profile",
            "breakeven._calibrate", "breakeven._kernels.registry"} <= set(graph)
    assert graph["breakeven"], "the package root imports nothing?"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_finds_a_planted_cycle():
    planted = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(planted) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle():
    assert _cycles(_graph()) == []


def test_no_module_imports_the_package_root():
    """The root imports every concern; a concern importing the root runs up
    the whole tree (``__version__`` comes from ``breakeven._version``)."""
    graph = _graph()
    assert [m for m, targets in graph.items()
            if "breakeven" in targets and m != "breakeven.__main__"] == []


# What each concern may import from the package (itself always): the layers
# from the bottom up.  The profile reads and writes files of tables and
# loads no kernel; the core's engine imports nothing of the package's.
BASE = {"breakeven._cpu", "breakeven._errors", "breakeven._text",
        "breakeven._version", "breakeven._build"}
ALLOWED = {
    "breakeven._core.engine": BASE,
    "breakeven._core.openmp": BASE | {"breakeven._core.engine"},
    "breakeven._core.runtimes": BASE | {"breakeven._core.engine",
                                        "breakeven._core.openmp"},
    "breakeven._profile": BASE | {"breakeven._core.engine", "breakeven._core.openmp",
                                  "breakeven._core.runtimes",
                                  "breakeven._interop.blas"},
    "breakeven._interop.blas": BASE,
}


@pytest.mark.parametrize("concern", sorted(ALLOWED))
def test_a_concern_imports_only_the_layers_below_it(concern):
    graph = _graph()
    members = [m for m in graph if m == concern or m.startswith(concern + ".")]
    assert members, concern
    allowed = ALLOWED[concern]
    wrong = {m: sorted(t for t in graph[m]
                       if t not in allowed and t != concern
                       and not t.startswith(concern + ".")
                       and t not in ("breakeven._core", "breakeven._interop"))
             for m in members}
    assert {m: t for m, t in wrong.items() if t} == {}
