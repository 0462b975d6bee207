"""The modules of ``crisp_api`` and ``middleware`` import each other without a circle.

The graph is read from the source with `ast`, not from ``sys.modules``: every import statement
counts, at module level, under ``if TYPE_CHECKING:`` or inside a function, because each says
that one module needs another, whenever Python runs it. A circle means two modules cannot be
understood (nor moved, nor tested) one without the other; the test names the circle it finds.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("crisp_api", "middleware")


def module_files(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    """Each module of ``packages`` (folders of ``root``) by dotted name (a package by its
    ``__init__.py``)."""
    modules: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def imported(module: str, path: Path, known: set[str]) -> Iterator[str]:
    """The known modules that ``module`` (the source at ``path``) imports anywhere in it.

    ``from a.b import c`` imports the module ``a.b.c`` if there is one, else ``a.b``; the
    packages above an imported module (whose ``__init__`` Python runs first) are not counted,
    as a package's ``__init__`` re-exporting its modules is no circle of design."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                if f"{base}.{alias.name}" in known:
                    yield f"{base}.{alias.name}"
                elif base in known:
                    yield base


def import_graph(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> dict[str, set[str]]:
    """Each module of ``packages`` with the modules of ``packages`` it imports."""
    files = module_files(root, packages)
    known = set(files)
    return {
        module: set(imported(module, path, known)) - {module} for module, path in files.items()
    }


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of ``graph`` as its modules in import order, first one repeated at the end;
    None if the graph has none (a depth-first search, in a stable order)."""
    done: set[str] = set()
    for root in sorted(graph):
        if root in done:
            continue
        path = [root]
        on_path = {root}
        stack = [iter(sorted(graph[root]))]
        while stack:
            following = next(stack[-1], None)
            if following is None:
                stack.pop()
                finished = path.pop()
                on_path.discard(finished)
                done.add(finished)
                continue
            if following in on_path:
                return [*path[path.index(following):], following]
            if following in done:
                continue
            path.append(following)
            on_path.add(following)
            stack.append(iter(sorted(graph[following])))
    return None


def test_the_graph_sees_every_kind_of_import(tmp_path):
    sources = {
        "__init__.py": "from pkg.a import A\nimport json\n",
        "a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.b import B\n",
        "b.py": "def late():\n    from . import c\n",
        "c.py": "import pkg.sub.d\n",
        "sub/__init__.py": "",
        "sub/d.py": "from .. import e\nfrom pkg.sub import d\n",
        "e.py": "from pkg import A\n",
    }
    for name, text in sources.items():
        (tmp_path / "pkg" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "pkg" / name).write_text(text)

    assert import_graph(tmp_path, ("pkg",)) == {
        "pkg": {"pkg.a"},  # a package re-exporting its module
        "pkg.a": {"pkg.b"},  # under TYPE_CHECKING
        "pkg.b": {"pkg.c"},  # inside a function, relative
        "pkg.c": {"pkg.sub.d"},  # import a.b.c
        "pkg.sub": set(),
        "pkg.sub.d": {"pkg.e"},  # from the package above; itself left out
        "pkg.e": {"pkg"},  # a name of a package's __init__
    }


def test_middleware_never_imports_crisp_api():
    graph = import_graph()
    assert "middleware.pipeline" in graph["middleware"]
    imported_by_middleware = set().union(
        *(graph[module] for module in graph if module.startswith("middleware")))
    assert not {name for name in imported_by_middleware if name.startswith("crisp_api")}


def test_a_cycle_is_found_and_named():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set(), "d": {"b"}}) is None


def test_no_module_imports_itself_back():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle or ())
