"""The project's import graph: no cycle, one-way app dependencies, project imports at module level."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("portal", "audit", "inventory", "slices", "provisioning")
# Apps below others may never import them (audit <- inventory <- slices <- provisioning).
FORBIDDEN = {
    "audit": ("inventory", "slices", "provisioning"),
    "inventory": ("slices", "provisioning"),
    "slices": ("provisioning",),
}


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imported(module: str, path: Path, known: dict[str, Path]) -> list[tuple[str, int, bool]]:
    """(project module imported, line, at module level?) for each import in the file."""
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    top_level = {id(node) for node in tree.body}
    out = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                out.append((name, node.lineno, id(node) in top_level))
    return out


def graph() -> dict[str, set[str]]:
    known = modules()
    return {m: {n for n, _, _ in imported(m, p, known)} for m, p in known.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_among_the_projects_modules():
    assert find_cycle(graph()) is None


def test_lower_apps_never_import_higher_ones():
    offending = [
        f"{m} -> {n}"
        for m, targets in graph().items()
        for n in targets
        if n.split(".")[0] in FORBIDDEN.get(m.split(".")[0], ())
    ]
    assert offending == []


def test_project_imports_are_at_module_level():
    known = modules()
    lazy = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for module, path in known.items()
        if not module.endswith(".apps")  # AppConfig.ready() registers checks and signals: Django's documented way
        for name, line, top in imported(module, path, known)
        if not top
    ]
    assert lazy == []
