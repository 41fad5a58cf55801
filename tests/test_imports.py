"""The package's import graph: no circles, and no import that runs back up from a lower layer to an upper one.

The graph is read from the source (``ast``), not from what happens to be imported at run time: an import inside
a function counts as much as one at the top of a module, since it runs when the function does. Imports under
``if TYPE_CHECKING:`` are left out: they never run.
"""

from __future__ import annotations

import ast
import pkgutil
from pathlib import Path

import pytest

import nas_attn

ROOT = Path(nas_attn.__file__).parent

#: layers, lowest first, by module-name prefix (``nas_attn.data`` covers ``nas_attn.data.*``): a module may import
#: from its own layer and the ones below, never from one above. Modules not named here are only held to "no
#: circles".
LAYERS = (
    ("model", ("nas_attn.modules", "nas_attn.backbones", "nas_attn.arch", "nas_attn.build", "nas_attn.complexity",
               "nas_attn.data")),
    ("trial", ("nas_attn.space", "nas_attn.train", "nas_attn.trial")),
    ("run", ("nas_attn.search", "nas_attn.searcher", "nas_attn.results", "nas_attn.dashboard", "nas_attn.export",
             "nas_attn.heatmaps", "nas_attn.probes", "nas_attn.trained", "nas_attn.papers")),
)


def package_modules() -> dict[str, Path]:
    """Every module of the package, by dotted name, with its source file."""
    found = {"nas_attn": ROOT / "__init__.py"}
    for info in pkgutil.walk_packages([str(ROOT)], "nas_attn."):
        path = ROOT.joinpath(*info.name.split(".")[1:])
        found[info.name] = path / "__init__.py" if info.ispkg else path.with_suffix(".py")
    return found


def _is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """The import statements that can run: everywhere, but not under ``if TYPE_CHECKING:``."""
    found, todo = [], [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        children = node.orelse if _is_type_checking(node) else ast.iter_child_nodes(node)
        todo.extend(children)
    return found


def _owner(name: str, modules: dict[str, Path]) -> str | None:
    """The package module that ``name`` (a module, or a name inside one) resolves to."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _targets(node: ast.Import | ast.ImportFrom, here: str, is_pkg: bool, modules: dict[str, Path]) -> set[str]:
    if isinstance(node, ast.Import):
        return {_owner(a.name, modules) for a in node.names if a.name.split(".")[0] == "nas_attn"} - {None}
    base = node.module or ""
    if node.level:  # relative: from the module's package, up ``level - 1`` packages
        package = here.split(".") if is_pkg else here.split(".")[:-1]
        base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else []))
    if base.split(".")[0] != "nas_attn":
        return set()
    # ``from nas_attn.x import y``: y is a submodule when there is one, else a name inside nas_attn.x
    return {f"{base}.{a.name}" if f"{base}.{a.name}" in modules else _owner(base, modules) for a in node.names} - {None}


def import_graph() -> dict[str, set[str]]:
    """module → the package modules it imports (itself left out)."""
    modules = package_modules()
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        is_pkg = path.name == "__init__.py"
        graph[name] = set().union(*(_targets(n, name, is_pkg, modules) for n in _imports(tree))) - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

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
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def layer_of(module: str) -> int | None:
    for rank, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return rank
    return None


def test_the_graph_is_read_from_every_module_and_both_kinds_of_import():
    graph = import_graph()
    assert len(graph) > 60 and "nas_attn.data.cache" in graph and "nas_attn.backbones.nets.common" in graph
    assert "nas_attn.arch" in graph["nas_attn.build"]  # module level
    assert "nas_attn.build" in graph["nas_attn.complexity"]  # inside complexity()
    assert "nas_attn.search" in graph["nas_attn"]  # inside run_search
    # ``if TYPE_CHECKING:`` imports never run: left out
    assert "nas_attn.heatmaps" not in graph["nas_attn.probes"]


def test_cycle_finder_finds_a_circle_and_nothing_else():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []


def test_no_import_circles():
    assert cycles(import_graph()) == []


def test_no_import_runs_back_up_a_layer():
    upward = sorted(f"{m} ({LAYERS[layer_of(m)][0]}) imports {t} ({LAYERS[layer_of(t)][0]})"
                    for m, targets in import_graph().items() for t in targets
                    if layer_of(m) is not None and layer_of(t) is not None and layer_of(t) > layer_of(m))
    assert upward == []


def test_every_layered_prefix_names_a_module():
    modules = package_modules()
    for _, prefixes in LAYERS:
        for prefix in prefixes:
            assert prefix in modules, f"{prefix}: no such module (LAYERS out of date)"


def test_the_version_is_written_once_in_pyproject():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    pyproject = tomllib.loads((ROOT.parent / "pyproject.toml").read_text(encoding="utf-8"))
    assert nas_attn.__version__ == pyproject["project"]["version"]
    written = [p for p in ROOT.rglob("*.py") if f'"{nas_attn.__version__}"' in p.read_text(encoding="utf-8")]
    assert written == []  # derived from the package metadata, not written again
