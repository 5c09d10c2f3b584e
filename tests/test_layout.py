"""The module map of DESIGN.md holds: no import cycles, and nothing in core/backend imports upward."""

from __future__ import annotations

import ast
from pathlib import Path

import huddle

SRC = Path(huddle.__file__).parent.parent
FEATURES = {"replay", "migration", "health", "shutdown", "validation", "cli", "api", "ui"}


def _modules() -> dict[str, tuple[Path, bool]]:
    found = {}
    for path in (SRC / "huddle").rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


def _imports() -> dict[str, set[str]]:
    """Every module's imports of other huddle modules, TYPE_CHECKING and function-level ones included."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, (path, is_package) in modules.items():
        package = name.split(".") if is_package else name.split(".")[:-1]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package[: len(package) - node.level + 1]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                subs = {f"{module}.{alias.name}" for alias in node.names} & modules.keys()
                deps |= subs
                if len(subs) < len(node.names) and module in modules and module != name:
                    deps.add(module)
            elif isinstance(node, ast.Import):
                deps |= {alias.name for alias in node.names} & modules.keys()
        graph[name] = deps - {"huddle", name}  # the package root only re-exports
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for dep in graph[node]:
            if dep not in index:
                visit(dep)
                low[node] = min(low[node], low[dep])
            elif dep in stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return cycles


def test_no_module_imports_another_that_imports_it_back() -> None:
    assert _cycles(_imports()) == []


def test_core_and_backend_never_import_upward() -> None:
    upward = []
    for name, deps in _imports().items():
        layer = name.split(".")[1] if name.count(".") else ""
        for dep in deps:
            target = dep.split(".")[1] if dep.count(".") else ""
            if layer in ("core", "backend") and target in FEATURES:
                upward.append((name, dep))
            if layer == "backend" and target == "core":
                upward.append((name, dep))
    assert upward == []


def test_the_public_api_and_stable_module_paths_import() -> None:
    import huddle.config
    import huddle.errors
    import huddle.migration
    import huddle.models
    import huddle.replay

    for name in huddle.__all__:
        assert getattr(huddle, name) is not None
    assert huddle.config.SessionManagerConfig and huddle.errors.HuddleError and huddle.models.Event
    assert huddle.migration.SessionMigration and huddle.replay.SessionReplay
