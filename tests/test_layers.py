"""The house in layers: no import circle and no import that runs up a layer (docs/architecture.md).

Every ``import`` and ``from ... import`` in gsdd_cli/ and gsdd_cuda/ counts, at module level or
inside a function. A module may import its own floor or lower ones; a circle is refused anywhere.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("gsdd_cuda", "gsdd_cli")

# lowest first; a module belongs to the first prefix it starts with (longest prefixes listed first)
LAYERS = [
    ("gsdd_cuda", 0),
    ("gsdd_cli.core", 1),
    ("gsdd_cli", 1),  # the package face: __version__ and the error classes, everything else lazily
    ("gsdd_cli.data", 2),
    ("gsdd_cli.models", 2),
    ("gsdd_cli.sets", 3),
    ("gsdd_cli.evaluate", 4),
    ("gsdd_cli.distill", 5),
    ("gsdd_cli.api", 6),
    ("gsdd_cli.export", 7),
    ("gsdd_cli.cli", 8),
    ("gsdd_cli.__main__", 8),
]


def layer(module: str) -> int:
    best = max((p for p, _ in LAYERS if module == p or module.startswith(p + ".")), key=len)
    return dict(LAYERS)[best]


def modules() -> dict[str, Path]:
    found = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules that ``name`` imports (a ``from pkg import sub`` counts as pkg.sub)."""
    tree = ast.parse(path.read_text(), str(path))
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_pkg else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {m: imports_of(m, p, known) for m, p in mods.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(g.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return found


def test_no_import_circle():
    assert cycles(graph()) == []


def test_no_import_runs_up_a_layer():
    g = graph()
    upward = sorted(f"{a} ({layer(a)}) -> {b} ({layer(b)})" for a, deps in g.items() for b in deps
                    if layer(b) > layer(a))
    assert upward == []


def test_the_checker_sees_circles_and_upward_imports():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert layer("gsdd_cli.cli.commands.distill") > layer("gsdd_cli.distill.loop") > layer("gsdd_cli.core.errors")
    assert layer("gsdd_cuda.ops") < layer("gsdd_cli.core.errors")


def test_no_python_file_over_450_lines():
    long = {str(p.relative_to(ROOT)): n for p in modules().values()
            if (n := len(p.read_text().splitlines())) > 450}
    assert long == {}
