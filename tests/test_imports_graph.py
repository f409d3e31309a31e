"""No dlkit module imports another that imports it back.

The graph is read from the source with ``ast``: module-level imports only (an import inside a
function runs later, when every module is complete, and imports under ``if TYPE_CHECKING:``
never run). Importing ``dlkit.a.b`` also runs the package ``dlkit.a``'s ``__init__``, so that
counts as an edge too, except for a module's own enclosing packages (already importing).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "dlkit"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))
            if "__pycache__" not in p.parts}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _top_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                found.append(node)
            elif isinstance(node, ast.If) and not _is_type_checking(node):
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                for block in (node.body, node.orelse, node.finalbody,
                              *[h.body for h in node.handlers]):
                    visit(block)
            elif isinstance(node, ast.With):
                visit(node.body)

    visit(tree.body)
    return found


def import_graph() -> dict[str, set[str]]:
    """dlkit module -> the dlkit modules its import runs, from module-level imports."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        here = name if is_package else name.rpartition(".")[0]
        targets: list[str] = []
        for node in _top_level_imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets += [alias.name for alias in node.names]
                continue
            base = node.module or ""
            if node.level:
                anchor = here.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                targets.append(sub if sub in modules else base)
        own_packages = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        for target in targets:
            if not target.startswith("dlkit"):
                continue
            parts = target.split(".")
            for i in range(2, len(parts) + 1):  # the target and the packages it sits in
                dep = ".".join(parts[:i])
                if dep in modules and dep != name and dep not in own_packages:
                    graph[name].add(dep)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle as a list of modules (first == last), or ``None``."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = dfs(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = dfs(node)
            if found:
                return found
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_the_graph_sees_the_imports_it_should():
    graph = import_graph()
    assert "dlkit.train.history" in graph["dlkit.train.loop"]
    assert "dlkit.checkpoint" in graph["dlkit.train.tracking"]
    assert "dlkit.train" in graph["dlkit.train.cv"] or "dlkit.train.loop" in graph["dlkit.train.cv"]


def test_dlkit_has_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_metrics_and_plot_do_not_import_the_training_loop():
    graph = import_graph()
    assert not any(dep.startswith("dlkit.train") for dep in graph["dlkit.metrics"])
    assert not any(dep.startswith("dlkit.train") for dep in graph["dlkit.plot"])
    code = ("import sys, dlkit.metrics, dlkit.plot, dlkit.train.history; "
            "print(sorted(m for m in sys.modules if m.startswith('dlkit.train')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout.strip()
    # The history module's package runs its __init__ (which re-exports the loop) only when
    # something imports it; metrics and plot themselves must not.
    code2 = ("import sys, dlkit.metrics, dlkit.plot; "
             "print(sorted(m for m in sys.modules if m.startswith('dlkit.train')))")
    out2 = subprocess.run([sys.executable, "-c", code2], capture_output=True, text=True,
                          check=True, cwd=ROOT).stdout.strip()
    assert out2 == "[]", out2
    assert "dlkit.train.history" in out


def test_metrics_still_serves_cross_validate_lazily():
    code = ("import sys, dlkit.metrics as m; before = 'dlkit.train' in sys.modules; "
            "from dlkit.metrics import cross_validate, CVResult; "
            "print(before, cross_validate.__module__, CVResult.__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout.split()
    assert out == ["False", "dlkit.train.cv", "dlkit.train.cv"]
