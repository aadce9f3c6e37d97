"""No two modules of the package import each other, directly or round a longer loop.

Every import statement counts, a function's lazy one included (it runs too, only later); only
those under ``if TYPE_CHECKING:`` do not (they never run). A cycle makes the import order
matter: whichever module is imported first sees the other half-initialised.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import analytex_async

PACKAGE = Path(analytex_async.__file__).parent
ROOT = "analytex_async"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _statements(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement that can run: ``if TYPE_CHECKING:`` bodies left out."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for other in node.orelse:
                yield from _statements(ast.Module(body=[other], type_ignores=[]))
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        yield from _statements(node)


def imports_of(name: str) -> set[str]:
    """The package's modules that module ``name`` imports."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _statements(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            if node.level:
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            # `from package import submodule` imports the submodule.
            targets = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names
            ]
        found.update(t for t in targets if t in MODULES and t != name)
    return found


def cycles() -> list[list[str]]:
    """Each import cycle once, as the list of modules round it."""
    graph = {name: imports_of(name) for name in MODULES}
    found: list[list[str]] = []
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        for target in sorted(graph[name]):
            if target in path:
                found.append([*path[path.index(target) :], target])
            elif target not in done:
                visit(target, [*path, target])
        done.add(name)

    for name in sorted(graph):
        if name not in done:
            visit(name, [name])
    return found


def test_the_graph_sees_lazy_imports_and_skips_type_checking_ones() -> None:
    plugin = imports_of("analytex_async._pytest_plugin")
    assert "analytex_async._emulated" in plugin  # imported inside a fixture
    assert "analytex_async._client" not in plugin  # only under TYPE_CHECKING
    assert "analytex_async._bulk._pipeline" in imports_of("analytex_async._imports")


def test_no_module_of_the_package_imports_itself_round_a_loop() -> None:
    assert cycles() == []
