"""The package's import graph runs one way (../shared/DESIGN.md, README "What it does, layer by layer").

Built from the AST of every module under ``asr_tune/``: every ``import`` counts, including lazy
imports inside functions; only imports under ``if TYPE_CHECKING:`` are left out. Checked: no
cycles between modules, no edge from a layer to one it may not import, and no Ray in the layers
that must run without it (directly or through what they import).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "asr_tune"

# layer -> the layers it may import (besides itself). Peers not listed may not import each other:
# training and quant know nothing of one another; float vs int8 is chosen in ``scoring`` above both.
BELOW: dict[str, set[str]] = {
    "base": set(),  # errors and the other dependency-free helpers (staging, textfile, ...)
    "config": {"base"},
    "data": {"config", "base"},
    "model": {"data", "config", "base"},
    "training": {"model", "data", "config", "base"},
    "quant": {"model", "data", "config", "base"},
    "scoring": {"training", "quant", "model", "data", "config", "base"},
    "tuning": {"scoring", "training", "quant", "model", "data", "config", "base"},
    "report": {"tuning", "config", "base"},
    "service": {"config", "base"},
    "cli": {"service", "report", "tuning", "scoring", "training", "quant", "model", "data", "config",
            "base"},
}
# top-level module or sub-package -> its layer
LAYER_OF = {
    "errors": "base", "staging": "base", "textfile": "base", "config": "config",
    "space_spec": "config", "data": "data", "model": "model",
    "training": "training", "quant": "quant", "scoring": "scoring", "tuning": "tuning",
    "report": "report", "service": "service", "cli": "cli", "__main__": "cli",
}
NO_RAY = {"data", "model", "training", "quant", "config", "base", "report"}
# Ray-free modules inside the Ray layer that a Ray-free layer may import
RAY_FREE_BRIDGES = {"asr_tune.tuning.folder"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, module: str, is_pkg: bool, known: set[str]) -> set[str]:
    """Every module ``module`` imports (anywhere in its body), ``TYPE_CHECKING`` blocks excluded."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_pkg else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in known else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PKG.rglob("*.py")}
    known = set(files)
    graph = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        graph[name] = _imports(tree, name, path.name == "__init__.py", known)
    return graph


GRAPH = _graph()


def _layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "asr_tune":
        return None
    if len(parts) == 1:
        return "api"  # the package root: the lazy public API, above everything
    if parts[1] not in LAYER_OF and (PKG / f"{parts[1]}.py").is_file():
        return "base"  # a new top-level helper module: bottom layer, so it may import only base
    return LAYER_OF.get(parts[1], f"unmapped:{parts[1]}")


def _internal(module: str) -> set[str]:
    return {m for m in GRAPH[module] if m.split(".")[0] == "asr_tune"}


def test_every_subpackage_has_a_layer():
    unmapped = sorted(m for m in GRAPH if str(_layer(m)).startswith("unmapped"))
    assert not unmapped, f"sub-packages outside every layer (add them to LAYER_OF): {unmapped}"


def test_no_upward_or_sideways_edges():
    bad = []
    for module in sorted(GRAPH):
        src = _layer(module)
        for dep in sorted(_internal(module)):
            dst = _layer(dep)
            # the package root holds only the lazy public API (it imports nothing at import time)
            if src not in ("api", dst) and dst != "api" and dst not in BELOW.get(src, set()):
                bad.append(f"{module} ({src}) -> {dep} ({dst})")
    assert not bad, "imports that run against the layers:\n" + "\n".join(bad)


def test_no_import_cycles():
    internal = {m: {d for d in _internal(m) if d in GRAPH and d != m} for m in GRAPH}
    # Tarjan's strongly connected components; any component of size > 1 is a cycle
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(internal[v]):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(internal):
        if v not in index:
            strong(v)
    assert not cycles, "import cycles (lazy imports count):\n" + "\n".join(" <-> ".join(c) for c in cycles)


@pytest.mark.parametrize("layer", sorted(NO_RAY))
def test_ray_free_layers_import_no_ray(layer):
    bad = []
    for module in sorted(m for m in GRAPH if _layer(m) == layer):
        seen, todo = set(), [module]
        while todo:  # everything the module reaches inside the package
            m = todo.pop()
            if m in seen or m not in GRAPH:
                continue
            seen.add(m)
            for dep in GRAPH[m]:
                if dep == "ray" or dep.startswith("ray."):
                    bad.append(f"{module}: {m} imports {dep}")
                elif dep in GRAPH and (_layer(dep) in NO_RAY or dep in RAY_FREE_BRIDGES):
                    todo.append(dep)
                elif dep in GRAPH:
                    bad.append(f"{module}: {m} imports {dep} ({_layer(dep)} layer)")
    assert not bad, f"the {layer} layer must run without Ray:\n" + "\n".join(sorted(set(bad)))


def test_the_graph_sees_lazy_imports_and_skips_type_checking():
    src = ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import asr_tune.cli\n"
           "def f():\n    from asr_tune.tuning import space\n    import ray.tune\n")
    found = _imports(ast.parse(src), "asr_tune.x", False, {"asr_tune.tuning.space"})
    assert found == {"typing", "asr_tune.tuning.space", "ray.tune"}
