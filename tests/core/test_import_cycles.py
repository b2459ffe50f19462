"""No import cycle among Gonglun's own modules (issue 18; the layers are in docs/design.md).

Every ``import`` and ``from ... import`` in ``gonglun/`` is read with ``ast``, wherever it
stands: at the top, inside a function (a deferred import is still a dependency, only a late
one) or under ``if TYPE_CHECKING`` (a type is a dependency too). Relative imports are resolved
against the module's package. An edge goes to the module named, never to the packages above
it that Python runs on the way (importing ``gonglun.ledger.posting`` runs
``gonglun/ledger/__init__.py``, but that is no dependency on what the ``__init__`` holds):

- ``import a.b.c`` is an edge to ``a.b.c``;
- ``from a.b import c`` is an edge to ``a.b.c`` when that is a module, else to ``a.b`` (the
  package's ``__init__``).

So a package ``__init__`` that re-exports its submodules' names (``from .x import X``) has
edges to those submodules, and a submodule that takes a name from its own package
(``from gonglun.ledger import Ledger``, ``from . import helper`` where ``helper`` is no
module) has an edge to the ``__init__``: both together are a circle, and counted, because
whichever is imported first sees the other half-initialised.

A cycle is a strongly connected component of two or more modules; each is printed with one
shortest circle through it, every edge with the file and line that makes it.
"""

from __future__ import annotations

import ast
from collections import deque
from collections.abc import Container, Iterable
from functools import cache
from itertools import pairwise
from pathlib import Path

import gonglun

ROOT = Path(gonglun.__file__).resolve().parent

Edge = tuple[str, str]


def module_files(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the package under ``root``, by dotted name."""
    top = root.name
    found: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join((top, *parts))] = path
    return found


def _resolve(module: str, is_package: bool, level: int, name: str | None) -> str:
    """The absolute name a (possibly relative) ``from`` names."""
    if level == 0:
        return name or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, name] if name else base)


def _deepest(name: str, modules: Container[str]) -> str | None:
    """The longest prefix of ``name`` that is one of ``modules``."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        candidate = ".".join(parts[:cut])
        if candidate in modules:
            return candidate
    return None


@cache
def import_graph(root: Path = ROOT) -> dict[Edge, list[str]]:
    """Edges between the package's own modules, each with where it is made (``file:line``)."""
    files = module_files(root)
    top = root.name
    edges: dict[Edge, list[str]] = {}

    def add(source: str, target: str | None, where: str) -> None:
        if target is not None and target != source:
            places = edges.setdefault((source, target), [])
            if where not in places:
                places.append(where)

    for module, path in files.items():
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text("utf-8"), filename=str(path))
        for node in ast.walk(tree):
            where = f"{path.relative_to(root.parent)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == top or alias.name.startswith(top + "."):
                        add(module, _deepest(alias.name, files), where)
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(module, is_package, node.level, node.module)
                if base != top and not base.startswith(top + "."):
                    continue
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    add(module, sub if sub in files else _deepest(base, files), where)
    return edges


def strongly_connected(nodes: Iterable[str], edges: Iterable[Edge]) -> list[list[str]]:
    """Tarjan's components of two or more nodes, each sorted, the list sorted."""
    succ: dict[str, list[str]] = {}
    for a, b in edges:
        succ.setdefault(a, []).append(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for start in sorted(nodes):
        if start in index:
            continue
        work: list[tuple[str, Iterable[str]]] = [(start, iter(sorted(succ.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(succ.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return sorted(found)


def shortest_circle(component: list[str], edges: Iterable[Edge]) -> list[str]:
    """One shortest circle through the component's first module, inside the component."""
    members = set(component)
    succ: dict[str, list[str]] = {}
    for a, b in edges:
        if a in members and b in members:
            succ.setdefault(a, []).append(b)
    start = component[0]
    came: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for child in sorted(succ.get(node, ())):
            if child == start:
                path = [node]
                while path[-1] != start:
                    path.append(came[path[-1]])
                return [*reversed(path), start]
            if child not in came:
                came[child] = node
                queue.append(child)
    return [start]


def describe(component: list[str], edges: dict[Edge, list[str]]) -> str:
    circle = shortest_circle(component, edges)
    lines = [f"cycle of {len(component)} modules: {', '.join(component)}",
             "  for example:"]
    for a, b in pairwise(circle):
        lines.append(f"    {a} -> {b}  ({', '.join(edges[(a, b)])})")
    return "\n".join(lines)


def test_the_import_graph_reads_what_python_would() -> None:
    edges = import_graph()
    # a relative ``from .x import Y`` in a package __init__ reaches the submodule
    assert ("gonglun.sandbox", "gonglun.sandbox.keys") in edges
    # a deferred import inside a function counts
    assert ("gonglun.api.app", "gonglun.api.embedded") in edges
    # ``from gonglun.hooks import hookimpl`` (no module ``hookimpl``) reaches the __init__
    assert ("gonglun.core_plugin", "gonglun.hooks") in edges
    # ``import gonglun.accounts.models`` reaches that module
    assert ("gonglun.ledger.models", "gonglun.accounts.models") in edges


def test_no_import_cycle_among_gonglun_modules() -> None:
    edges = import_graph()
    components = strongly_connected(module_files(), edges)
    report = "\n".join(describe(c, edges) for c in components)
    print(report)
    assert not components, f"{len(components)} import cycle(s) among gonglun modules:\n{report}"
