"""The package's modules import one another without a cycle (issue 27): data flows one way, and a
module that needs another's helper for one function is the sign of a helper in the wrong place.
Read from the source (imports under ``TYPE_CHECKING`` count too: they are a cycle mypy and a reader
must untangle), without importing anything."""

from __future__ import annotations

import ast
from pathlib import Path

import exporter

PACKAGE = Path(exporter.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _graph() -> dict[str, set[str]]:
    paths = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    module = ".".join([*base, node.module] if node.module else base)
                else:
                    module = node.module or ""
                candidates = [module, *(f"{module}.{alias.name}" for alias in node.names)]
            elif isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            else:
                continue
            deps |= {c for c in candidates if c in paths and c != name}
        graph[name] = deps
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (as a path that returns to its start), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return [*path[path.index(dep):], dep]
            if dep not in state and (found := visit(dep)) is not None:
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)) is not None:
            return found
    return None


def test_the_package_has_no_import_cycle() -> None:
    graph = _graph()
    assert {"exporter.catalog", "exporter.signers", "exporter.config"} <= set(graph)  # the walk found them
    cycle = _cycle(graph)
    assert cycle is None, " -> ".join(cycle or [])


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_signers_know_nothing_of_targets_and_views_nothing_of_signers() -> None:
    graph = _graph()
    assert "exporter.config" not in graph["exporter.signers"]
    assert "exporter.signers" not in graph["exporter.views"]


#: the modules of each dependency the package may import: the ones its documentation presents as its
#: API (issue 27: only public, documented APIs). A module missing here is refused until someone checks
#: that it is documented and adds it; a dependency's internal module (aiohttp.web_protocol, say) never is.
DOCUMENTED_MODULES = {
    "aiohttp", "aiohttp.web", "aiohttp.abc", "aiohttp.typedefs",  # aiohttp's reference: web, abc, Handler type
    "bcrypt", "cryptography", "cryptography.x509", "isal", "isal.isal_zlib", "prometheus_client",
    "prometheus_client.core", "prometheus_client.parser", "pycurl", "re2", "yaml", "yarl",
}


def test_dependencies_are_imported_only_through_their_documented_modules() -> None:
    import sys

    outside = set(sys.stdlib_module_names) | {"exporter"}
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            elif isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            else:
                continue
            wrong += [f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {module}" for module in modules
                      if module.partition(".")[0] not in outside and module not in DOCUMENTED_MODULES]
    assert not wrong, wrong
