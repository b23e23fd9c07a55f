"""No import cycles between artextract's modules.

Every module under ``src/artextract`` is parsed with :mod:`ast`; an edge A -> B is drawn for each
``import artextract.b``, ``from artextract import b``, ``from . import b``, ``from .b import y`` or
``from ..b import y`` in A (relative imports resolved against A's package), and for each
``importlib.import_module("artextract.b")`` with a literal name, and for each string literal
``"artextract.b"`` in a module-level list named ``COMMAND_MODULES`` (``artextract.cli`` imports its
command modules, ``artextract.cli.commands.<verb>``, by name when it builds the parser, so they are its
imports too). A submodule's import of its own package's ``__init__`` is drawn like any other import
(``from .. import main`` in ``artextract.cli.commands.demo`` is an edge to ``artextract.cli``); the
package ``__init__`` that Python runs before any of its submodules is not an edge of its own. The strict version counts imports
inside functions and methods too (a lazy import is still a dependency, and a cycle through one is a
loop a reader has to untangle); only imports under ``if TYPE_CHECKING:`` are left out, since they never
run. The graph must have no cycle, apart from the edges in :data:`ALLOWED_LAZY_EDGES` (each with its reason).
"""
from __future__ import annotations

import ast
from pathlib import Path

import artextract

ROOT = Path(artextract.__file__).resolve().parent
PACKAGE = "artextract"

# Lazy imports (inside a function) allowed to close a loop, each with the reason; the strict test drops
# them from the graph before looking for cycles, and checks that each is still there and still lazy.
ALLOWED_LAZY_EDGES = {
    ("artextract.cli.commands.demo", "artextract.cli"):
        "`artextract demo` runs each step as an ordinary `artextract` command through cli.main (same parser, "
        "logging set-up and error handling as the shell); cli lists the demo command in COMMAND_MODULES, so "
        "the call back is imported inside demo._step, at run time, when cli is fully loaded. The library's "
        "demo_pipeline.run_demo takes that step as a parameter and imports no command.",
}


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


def _command_modules(tree: ast.Module) -> list[str]:
    """The string literals of a module-level ``COMMAND_MODULES = [...]`` (or tuple), else none."""
    names = []
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] \
            if isinstance(node, ast.AnnAssign) and node.value is not None else []
        if any(isinstance(t, ast.Name) and t.id == "COMMAND_MODULES" for t in targets) \
                and isinstance(node.value, (ast.List, ast.Tuple)):
            names += [e.value for e in node.value.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
    return names


def _known(name: str, modules: dict[str, Path]) -> str | None:
    """The module itself, or the package that holds the name (``from x import f``: f is no module)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _targets(node, module: str, is_package: bool, modules: dict[str, Path]) -> set[str]:
    """The artextract modules one import node names."""
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
            target = _known(name, modules)
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
        for name in _command_modules(tree):  # loaded by name when the module runs: a module-level edge
            target = _known(name, modules) if name.startswith(PACKAGE + ".") else None
            if target and target != module:
                graph[module].add(target)
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
    assert "artextract.cli.base" in graph["artextract.cli.commands.serve"]  # from ..base import ...
    assert "artextract.web.review" in graph["artextract.cli.commands.review"]  # from ...web.review import ...
    assert "artextract.data.catalog" in graph["artextract.web.review"]  # from ..data.catalog import ...
    assert "artextract.cli" in graph["artextract.cli.commands.demo"]  # from .. import main (a package)
    # the command modules artextract.cli loads by name
    assert {"artextract.cli.commands.ingest", "artextract.cli.commands.demo",
            "artextract.cli.commands.status"} <= graph["artextract.cli"]
    assert "artextract.cli.commands.demo" in import_graph(strict=False)["artextract.cli"]


def test_every_command_module_is_loaded_by_name():
    """Each module of artextract.cli.commands is in COMMAND_MODULES, so the graph sees every verb."""
    from artextract.cli import COMMAND_MODULES

    on_disk = {m for m in _modules() if m.startswith("artextract.cli.commands.")}
    assert on_disk == set(COMMAND_MODULES)


def test_a_cycle_through_the_command_modules_is_found():
    """A library module that imported a command module would close a loop through cli's COMMAND_MODULES."""
    graph = import_graph(strict=True)
    graph["artextract.cli.base"] = graph["artextract.cli.base"] | {"artextract.cli"}
    assert any({"artextract.cli", "artextract.cli.base"} <= comp for comp in cyclic_components(graph))


def test_command_modules_literals_are_edges():
    tree = ast.parse('COMMAND_MODULES = ["artextract.a", "artextract.b"]\nOTHER = ["artextract.c"]\n'
                     'def f():\n    COMMAND_MODULES = ["artextract.d"]\n')
    assert _command_modules(tree) == ["artextract.a", "artextract.b"]


def test_find_cycles_reports_a_loop():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(graph) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_at_module_level():
    graph = import_graph(strict=False)
    assert not find_cycles(graph), "import cycles (module-level imports):\n" + _describe(graph)


def test_allowed_lazy_edges_are_lazy_and_still_there():
    strict, eager = import_graph(strict=True), import_graph(strict=False)
    for (a, b), reason in ALLOWED_LAZY_EDGES.items():
        assert reason
        assert b in strict[a], f"{a} no longer imports {b}: drop it from ALLOWED_LAZY_EDGES"
        assert b not in eager[a], f"{a} imports {b} at module level: only a lazy import may be allowed"


def test_no_import_cycles_counting_lazy_imports():
    graph = import_graph(strict=True)
    for a, b in ALLOWED_LAZY_EDGES:
        graph[a].discard(b)
    assert not find_cycles(graph), "import cycles (imports inside functions counted too):\n" + _describe(graph)
