"""The shape of the tree: dependencies point one way, no import cycles, production never imports
`tests`. Read from the source with `ast`, so a lazy import inside a function counts too."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = (
    "common",
    "schema",
    "fakes",
    "exporters",
    "recorder",
    "api",
    "backups",
    "alert_rules",
    "alertmanager",
    "dashboards",
    "compose",
    "benchmarks",
)
# What each layer may import of ours (besides itself). The floor stands on nothing of ours;
# services and exporters stand on the floor and the schema, never on each other.
ALLOWED = {
    "common": set(),
    "schema": {"common"},
    "fakes": {"common"},
    "exporters": {"common", "schema"},
    "recorder": {"common", "schema"},
    "api": {"common", "schema"},
    "backups": {"common", "schema"},
    "alert_rules": {"common"},
    "alertmanager": {"common"},
    "dashboards": {"common", "alert_rules"},
    "compose": set(PRODUCTION) - {"benchmarks"},
    "benchmarks": set(PRODUCTION),
}


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: set[str] = set()
    pkg = _module(path).rsplit(".", 1)[0] if path.name != "__init__.py" else _module(path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                mod = ".".join([*base, node.module] if node.module else base)
            else:
                mod = node.module or ""
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in node.names)
    return out


def _graph() -> dict[str, set[str]]:
    files = [p for top in PRODUCTION for p in (ROOT / top).rglob("*.py")]
    modules = {_module(p): p for p in files}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        graph[name] = {m for m in _imports(path) if m in modules or m.split(".")[0] == "tests"}
    return graph


def _group(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "exporters" and len(parts) > 1 else parts[0]


def _offenders(graph: dict[str, set[str]]) -> list[str]:
    out = []
    for module, deps in graph.items():
        top = module.split(".")[0]
        for dep in deps:
            dep_top = dep.split(".")[0]
            if dep_top == "tests":
                out.append(f"{module} -> {dep}")
            elif dep_top == top:
                # Within exporters/, one exporter never imports another.
                if top == "exporters" and dep != "exporters" and _group(dep) != _group(module):
                    out.append(f"{module} -> {dep}")
            elif dep_top not in ALLOWED[top]:
                out.append(f"{module} -> {dep}")
    return sorted(out)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                cycles.append([*stack[stack.index(dep) :], dep])
            elif dep in graph and dep not in state:
                visit(dep, stack)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    return cycles


def test_dependencies_point_one_way_and_never_into_tests() -> None:
    assert _offenders(_graph()) == []


def test_no_import_cycles() -> None:
    assert _cycles(_graph()) == []


def test_the_checks_catch_what_they_are_for() -> None:
    bad = {
        "schema.writes": {"recorder.store"},  # upward
        "exporters.billing.app": {"exporters.vercel.api", "common.web"},  # sideways
        "compose.stack": {"tests.fakes"},  # into tests
        "exporters.supabase.config": {"exporters.supabase.sql"},
        "exporters.supabase.sql": {"exporters.supabase.config"},  # a cycle
    }
    assert _offenders(bad) == [
        "compose.stack -> tests.fakes",
        "exporters.billing.app -> exporters.vercel.api",
        "schema.writes -> recorder.store",
    ]
    assert _cycles(bad) == [
        ["exporters.supabase.config", "exporters.supabase.sql", "exporters.supabase.config"]
    ]
