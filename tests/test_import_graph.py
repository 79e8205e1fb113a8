"""The import graph of prm_data/ and flows/ has no cycle, lazy (function-level) imports included.

Specification: every `import` and `from ... import` anywhere in a module (at the
top, inside a function, under `if TYPE_CHECKING`) is an edge from that module to
the project module it names; the graph of those edges is acyclic, so no import
circle is hidden behind a lazy import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("prm_data", "flows")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))}


def imported(node: ast.AST, module: str, is_package: bool, known: set[str]) -> list[str]:
    """The project modules an import node names (a `from pkg import name` names pkg.name when it is a module)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            base = module.split(".")
            base = base[: len(base) - node.level + (1 if is_package else 0)]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        names = [f"{target}.{a.name}" if f"{target}.{a.name}" in known else target for a in node.names]
    else:
        return []
    out = []
    for name in names:
        while name and name not in known:  # `import prm_data.llm.client` -> the module itself
            name = name.rpartition(".")[0]
        if name:
            out.append(name)
    return out


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    known = set(modules)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            for target in imported(node, module, path.name == "__init__.py", known):
                if target != module and not module.startswith(target + "."):  # a package's own __init__
                    graph[module].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_graph_sees_lazy_imports_as_edges():
    graph = import_graph()
    # flows.commands imports the run config inside a function only
    assert "prm_data.config" in graph["flows.commands"]
    assert "prm_data.provenance" in graph["prm_data.dataset_card"]


def test_the_run_config_no_longer_reaches_itself_through_export_and_the_card():
    graph = import_graph()  # was config -> export -> dataset_card -> pipeline.runs -> config
    assert "prm_data.pipeline.runs" not in graph["prm_data.dataset_card"]
    assert "prm_data.provenance" in graph["prm_data.pipeline.runs"] and not graph["prm_data.provenance"]


def test_no_import_circle_in_prm_data_or_flows():
    assert find_cycle(import_graph()) is None  # run_export lives in export_run.py, beside export and the card
