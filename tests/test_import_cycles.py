"""No import cycles between artextract's modules.

Every module under ``src/artextract`` is parsed with :mod:`ast`; an edge A -> B is drawn for each
``import artextract.b``, ``from artextract import b``, ``from . import b``, ``from .b import y`` or
``from ..b import y`` in A (relative imports resolved against A's package), and for each
``importlib.import_module("artextract.b")`` with a literal name. The strict version counts imports
inside functions and methods too (a lazy import is still a dependency, and a cycle through one is a
loop a reader has to untangle); only imports under ``if TYPE_CHECKING:`` are left out, since they never
run. The graph must have no cycle.
"""
from __future__ import annotations

import ast
from pathlib import Path

import artextract

ROOT = Path(artextract.__file__).resolve().parent
PACKAGE = "artextract"


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package (``__init__`` is its package)."""
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = (PACKAGE,) + path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, strict: bool):
    """The import nodes (and ``importlib.import_module`` calls) of a module, skipping TYPE_CHECKING
    blocks; with ``strict=False``, only the ones that run when the module is imported."""
    stack = list(ast.iter_child_nodes(tree))
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if not strict and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom, ast.Call)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _targets(node, module: str, is_package: bool, modules: dict[str, Path]) -> set[str]:
    """The artextract modules one import node names."""
    def known(name: str) -> str | None:
        # the module itself, or the package that holds the name (``from x import f``: f is no module)
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    names: list[str] = []
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            base = module.split(".")
            if not is_package:
                base = base[:-1]
            base = base[:len(base) - (node.level - 1)]
            source = ".".join(base + ([node.module] if node.module else []))
        else:
            source = node.module or ""
        names = [f"{source}.{a.name}" if f"{source}.{a.name}" in modules else source for a in node.names]
    elif isinstance(node, ast.Call):
        func = node.func
        called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if called == "import_module" and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            names = [node.args[0].value]
    out = set()
    for name in names:
        if name == PACKAGE or name.startswith(PACKAGE + "."):
            target = known(name)
            if target and target != module:
                out.add(target)
    return out


def import_graph(strict: bool = True) -> dict[str, set[str]]:
    modules = _modules()
    graph = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        graph[module] = set()
        for node in _imports(tree, strict):
            graph[module] |= _targets(node, module, is_package, modules)
    return graph


def cyclic_components(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm): each module
    of one reaches every other through imports."""
    index, low, on_stack, stack, comps = {}, {}, set(), [], []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
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
                comps.append(set(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return comps


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One shortest cycle per strongly connected component with more than one module."""
    cycles = []
    for comp in cyclic_components(graph):
        # a shortest path back to the start, through the component only
        start = min(comp)
        prev, frontier = {start: None}, [start]
        end = None
        while frontier and end is None:
            nxt = []
            for v in frontier:
                for w in sorted(graph[v] & comp):
                    if w == start:
                        end = v
                        break
                    if w not in prev:
                        prev[w] = v
                        nxt.append(w)
                if end is not None:
                    break
            frontier = nxt
        path = []
        while end is not None:
            path.append(end)
            end = prev[end]
        cycles.append(path[::-1] + [start])
    return cycles


def _describe(graph: dict[str, set[str]]) -> str:
    lines = []
    for comp, cycle in zip(cyclic_components(graph), find_cycles(graph)):
        lines.append(" -> ".join(cycle))
        lines += [f"    {m} imports {', '.join(sorted(graph[m] & comp))}" for m in sorted(comp)]
    return "\n".join(lines)


def test_the_graph_sees_the_imports():
    graph = import_graph()
    assert "artextract.data.catalog" in graph["artextract.data"]  # from .catalog import ... (in __init__)
    assert "artextract.cli" in graph["artextract.web.cli"]  # from ..cli import ...
    assert "artextract.data.catalog" in graph["artextract.web.review"]  # from ..data.catalog import ...


def test_find_cycles_reports_a_loop():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(graph) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_at_module_level():
    graph = import_graph(strict=False)
    assert not find_cycles(graph), "import cycles (module-level imports):\n" + _describe(graph)


def test_no_import_cycles_counting_lazy_imports():
    graph = import_graph(strict=True)
    assert not find_cycles(graph), "import cycles (imports inside functions counted too):\n" + _describe(graph)
