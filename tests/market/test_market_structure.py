"""The market is one domain below the server and the CLI (DESIGN.md "Layout").

An AST scan of every import statement (module level and inside functions, since a
lazy import is still a dependency) checks that ``databazaar.market`` imports neither
``databazaar.server``, ``databazaar.cli`` nor ``databazaar.demo``, that no two modules
of the market or of the web layer import each other (directly or through a cycle), and
that no market module outgrows ~500 lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

import databazaar

SRC = Path(databazaar.__file__).parent
MAX_LINES = 520


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every ``databazaar`` module ``path`` imports at run time (``from a import b``
    counts ``a.b`` if that is a module, else ``a``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: set[str] = set()
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("databazaar"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = _module_name(path)
                if path.name != "__init__.py":
                    package = package.rpartition(".")[0]
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            if not mod.startswith("databazaar"):
                continue
            for alias in node.names:
                sub = f"{mod}.{alias.name}"
                out.add(sub if _exists(sub) else mod)
    return out


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node except those under ``if TYPE_CHECKING:`` (annotations only)."""
    nodes: list[ast.AST] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            todo.extend(node.orelse)
            continue
        nodes.append(node)
        todo.extend(ast.iter_child_nodes(node))
    return nodes


def _exists(module: str) -> bool:
    rel = Path(*module.split(".")[1:])
    return (SRC / rel).with_suffix(".py").is_file() or (SRC / rel / "__init__.py").is_file()


def _graph(package: str) -> dict[str, set[str]]:
    root = SRC / Path(*package.split(".")[1:])
    return {_module_name(p): _imports(p) for p in root.rglob("*.py")}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in graph:
                continue
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            comp = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                comp.append(top)
                if top == node:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_market_imports_neither_server_nor_cli() -> None:
    bad = {
        (mod, dep)
        for mod, deps in _graph("databazaar.market").items()
        for dep in deps
        if dep.startswith(("databazaar.server", "databazaar.cli", "databazaar.demo"))
    }
    assert not bad, f"the market must not import the server, CLI or demo: {sorted(bad)}"


def test_no_import_cycles_in_the_market_or_the_web_layer() -> None:
    graph = {**_graph("databazaar.market"), **_graph("databazaar.server")}
    # a package's __init__ re-exporting its modules is not a cycle between modules
    for name in list(graph):
        if (SRC.parent / Path(*name.split("."))).is_dir():
            graph.pop(name)
    assert _cycles(graph) == []


def test_the_scan_sees_lazy_imports_and_cycles(tmp_path: Path) -> None:
    """The checks above can fail: the scanner finds imports inside functions, skips
    typing-only ones, and finds a two-module cycle."""
    assert "databazaar.market.orders" in _imports(SRC / "market" / "service.py")
    mod = tmp_path / "mod.py"
    mod.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from databazaar.market.service import Market\n"
        "def f():\n"
        "    from databazaar.server.app import create_app\n"
        "    import databazaar.cli\n"
    )
    lazy = _imports(mod)
    assert lazy == {"databazaar.server.app", "databazaar.cli"}
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]


def test_no_market_module_outgrows_500_lines() -> None:
    long = {
        _module_name(p): n
        for p in (SRC / "market").rglob("*.py")
        if "migrations" not in p.parts
        and (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}
