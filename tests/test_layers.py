"""The folder tree is the data flow: no import cycles, and no import that climbs the layer order.

Every module of ``src/zos_upgrade`` is parsed with ``ast``; every import counts — at module level,
inside functions, under ``if TYPE_CHECKING`` — since any of them can close a cycle at run time or
tie a lower layer to an upper one. ``from pkg import name`` counts as an import of the module
``pkg.name`` when that is a module, else of ``pkg`` (its ``__init__``). The implicit import of a
package's ``__init__`` when one of its submodules is imported is not counted: it is how Python
loads packages, not a dependency anybody wrote.

``LAYERS`` is the order, top first (the README's tour shows the same): a module may import modules
of its own package and of any layer below its own, never one above, nor a peer of its own layer.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = "zos_upgrade"

# top first; one row a layer; the names are packages or modules under zos_upgrade
LAYERS: tuple[tuple[str, ...], ...] = (
    ("__main__",),                    # python -m zos_upgrade
    ("cli",),                         # the zos-upgrade command
    ("demo",),                        # the sandboxed demo the CLI runs
    ("hubserver",),                   # the 0-hub compatible server product
    ("daemon",),                      # policy per followed thing, the loop, wiring, the process
    ("watch",),                       # watchers: something newer exists
    ("upgrade",),                     # the transaction: Upgrader, journal, plan, flister
    ("sources",),                     # release sources -> VerifiedRelease
    ("node",),                        # the node's own files: boot files, events, status.json
    ("hub", "publisher"),             # the node-side hub client; signed release objects
    ("rollout", "trust"),             # fleet rollout rules (plans, buckets); release authenticity (TUF)
    ("flist",),                       # flist formats, block stores, materialize
    ("supervisor",),                  # zinit and supervisord back-ends
    ("metrics", "lock"),              # the daemon's process helpers
    ("config",),                      # the one TOML config
    ("configd",),                     # its files: main file and config fragments, merged
    ("net", "http11", "fsutil", "tasks", "log"),  # I/O helpers
    ("leanhttp",),                    # the daemon's polls without httpx (net.fetch's lean transport)
    ("lazy", "lazytls"),              # lazy re-exports of package __init__s; asyncio without OpenSSL
    ("versions",),
    ("errors",),
    ("",),                            # the package itself (its version)
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted((SRC / ROOT).rglob("*.py"))}


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> Iterator[tuple[str, int]]:
    """(imported module of ours, line) for every import statement in the file, wherever it stands."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == ROOT or alias.name.startswith(ROOT + "."):
                    yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            if source != ROOT and not source.startswith(ROOT + "."):
                continue
            for alias in node.names:
                full = f"{source}.{alias.name}"
                yield (full if full in modules else source), node.lineno


def import_graph(modules: dict[str, Path]) -> dict[str, dict[str, int]]:
    graph: dict[str, dict[str, int]] = {}
    for name, path in modules.items():
        edges: dict[str, int] = {}
        for target, line in imports_of(name, path, modules):
            if target in modules and target != name:
                edges.setdefault(target, line)
        graph[name] = edges
    return graph


def find_cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each as a path."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

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
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def layer_of(name: str) -> tuple[int, str]:
    """(rank, unit): rank 0 is the top layer; the unit is the package or module it belongs to."""
    rest = name[len(ROOT) + 1:] if name != ROOT else ""
    unit = rest.split(".")[0]
    for rank, row in enumerate(LAYERS):
        if unit in row:
            return rank, unit
    raise AssertionError(f"{name} belongs to no layer: add its package to LAYERS (and to the README's tour)")


def climbing_imports(graph: dict[str, dict[str, int]]) -> list[str]:
    wrong: list[str] = []
    for name, edges in sorted(graph.items()):
        rank, unit = layer_of(name)
        for target, line in sorted(edges.items()):
            target_rank, target_unit = layer_of(target)
            if target_unit == unit:
                continue
            if target_rank < rank:
                wrong.append(f"{name}:{line} imports {target}, a layer above it")
            elif target_rank == rank:
                wrong.append(f"{name}:{line} imports {target}, a peer in its own layer")
    return wrong


def test_no_import_cycles() -> None:
    cycles = find_cycles(import_graph(all_modules()))
    assert cycles == [], "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_no_import_climbs_the_layer_order() -> None:
    wrong = climbing_imports(import_graph(all_modules()))
    assert wrong == [], "\n".join(wrong)


def test_every_module_has_a_layer() -> None:
    for name in all_modules():
        layer_of(name)


# --- the checks themselves bite ------------------------------------------------------------------


def _tree(tmp_path: Path, files: dict[str, str]) -> dict[str, Path]:
    for rel, text in files.items():
        path = tmp_path / ROOT / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return {module_name(p): p for p in sorted((tmp_path / ROOT).rglob("*.py"))}


@pytest.fixture
def fake_src(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(f"{__name__}.SRC", tmp_path)
    return tmp_path


def test_an_upward_import_inside_a_function_is_found(fake_src: Path) -> None:
    modules = _tree(fake_src, {
        "__init__.py": "",
        "flist/__init__.py": "",
        "flist/reader.py": "def f():\n    from zos_upgrade.upgrade.upgrader import Upgrader\n",
        "upgrade/__init__.py": "",
        "upgrade/upgrader.py": "from zos_upgrade.flist import reader\n",
    })
    graph = import_graph(modules)
    assert climbing_imports(graph) == [
        "zos_upgrade.flist.reader:2 imports zos_upgrade.upgrade.upgrader, a layer above it"]
    assert find_cycles(graph) == [["zos_upgrade.flist.reader", "zos_upgrade.upgrade.upgrader"]]


def test_a_cycle_under_type_checking_and_relative_imports_is_found(fake_src: Path) -> None:
    modules = _tree(fake_src, {
        "__init__.py": "",
        "upgrade/__init__.py": "",
        "upgrade/errors.py": "import typing\nif typing.TYPE_CHECKING:\n    from .upgrader import R\n",
        "upgrade/upgrader.py": "from zos_upgrade.upgrade.errors import E\n",
    })
    graph = import_graph(modules)
    assert find_cycles(graph) == [["zos_upgrade.upgrade.errors", "zos_upgrade.upgrade.upgrader"]]
    assert climbing_imports(graph) == []  # inside one package: allowed


def test_a_peer_import_is_found(fake_src: Path) -> None:
    modules = _tree(fake_src, {
        "__init__.py": "",
        "hub/__init__.py": "import zos_upgrade.publisher.base\n",
        "publisher/__init__.py": "",
        "publisher/base.py": "",
    })
    assert climbing_imports(import_graph(modules)) == [
        "zos_upgrade.hub:1 imports zos_upgrade.publisher.base, a peer in its own layer"]
