"""Structural checks of the ``vlpbench`` package (issue 23), run by ``tests/test_structure.py``.

* **import cycles**: the graph of module-level imports (imports inside functions and under
  ``if TYPE_CHECKING:`` are left out: they run later or never) must have no cycle, so every module
  can be imported first and the layers (core → config/data/models/objective → engine/tasks →
  board/launchers/devkit → cli) stay layers;
* **size**: no module over :data:`MAX_MODULE_LINES` lines and no function over
  :data:`MAX_FUNCTION_LINES` lines (a long one is a sign of several jobs in one place);
* **light start-up**: ``vlpbench --help`` and ``vlpbench plugins`` import none of
  :data:`HEAVY_PACKAGES` (each costs from a tenth of a second to seconds), so imports of them are
  made inside the functions that need them only on the modules those commands load.

``python scripts/check_structure.py`` prints what breaks a rule and exits 1 if anything does.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
PACKAGE = Path(__file__).resolve().parents[1] / "vlpbench"
#: Packages whose import the start-up commands must not pay for.
HEAVY_PACKAGES = ("torch", "torchvision", "timm", "transformers", "tokenizers", "numpy", "pandas", "scipy", "sklearn",
                  "monai", "pydantic", "ray", "submitit", "mlflow", "wandb", "tensorboard", "matplotlib", "yaml")
#: The commands that must start fast (README › Figures), as ``vlpbench`` arguments.
STARTUP_COMMANDS = (("--help",), ("plugins",))
_RUN_COMMAND = """\
import contextlib, io, sys
from vlpbench.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    try:
        main({argv!r})
    except SystemExit:
        pass
"""


def module_name(path: Path, package: Path = PACKAGE) -> str:
    """``vlpbench/core/errors.py`` → ``vlpbench.core.errors`` (a package's ``__init__`` is the package)."""
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _module_level(body: list[ast.stmt]) -> list[ast.stmt]:
    """Statements that run when the module is imported (descending into if/try, not TYPE_CHECKING)."""
    out: list[ast.stmt] = []
    for node in body:
        if isinstance(node, ast.If):
            if not _is_type_checking(node):
                out += _module_level(node.body) + _module_level(node.orelse)
        elif isinstance(node, ast.Try):
            out += _module_level(node.body) + _module_level(node.orelse) + _module_level(node.finalbody)
            for handler in node.handlers:
                out += _module_level(handler.body)
        else:
            out.append(node)
    return out


def _with_parents(name: str, modules: set[str]) -> set[str]:
    """Importing ``a.b.c`` runs ``a``, ``a.b`` and ``a.b.c``: every one of them that is ours."""
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)} & modules


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """module → the package modules its import runs at module level (its own parent packages left
    out: they are always imported before it, so they cannot close a cycle through it)."""
    files = {module_name(p, package): p for p in sorted(package.rglob("*.py"))}
    modules = set(files)
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        edges: set[str] = set()
        is_package = path.name == "__init__.py"
        for node in _module_level(ast.parse(path.read_text(), str(path)).body):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    edges |= _with_parents(alias.name, modules)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = name.split(".") if is_package else name.split(".")[:-1]
                    anchor = anchor[: len(anchor) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                edges |= _with_parents(base, modules)
                for alias in node.names:
                    edges |= {f"{base}.{alias.name}"} & modules
        # a module's own packages are already being imported when it runs: not an edge of a cycle
        graph[name] = edges - _with_parents(name, modules)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def oversized(package: Path = PACKAGE) -> list[str]:
    """Modules over :data:`MAX_MODULE_LINES` lines and functions over :data:`MAX_FUNCTION_LINES`."""
    found = []
    for path in sorted(package.rglob("*.py")):
        text = path.read_text()
        where = path.relative_to(package.parent)
        lines = len(text.splitlines())
        if lines > MAX_MODULE_LINES:
            found.append(f"{where}: {lines} lines (module limit {MAX_MODULE_LINES})")
        for node in ast.walk(ast.parse(text, str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    found.append(f"{where}:{node.lineno} {node.name}(): {length} lines "
                                 f"(function limit {MAX_FUNCTION_LINES})")
    return found


def heavy_imports(code: str, package: Path = PACKAGE) -> list[str]:
    """The :data:`HEAVY_PACKAGES` that running ``code`` in a fresh interpreter imports (with ``package``'s
    folder first on the path, so the checked-out code is what runs)."""
    listing = code + "\nimport sys\nprint('\\n'.join(sys.modules), file=sys.stderr)\n"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(package.parent), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", listing], capture_output=True, text=True, env=env,
                          cwd=package.parent, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"the start-up check's interpreter failed:\n{done.stderr}")
    loaded = {line.split(".")[0] for line in done.stderr.splitlines()}
    return sorted(loaded & set(HEAVY_PACKAGES))


def heavy_startup(package: Path = PACKAGE) -> list[str]:
    """A line for each start-up command (:data:`STARTUP_COMMANDS`) that imports a heavy package."""
    found = []
    for argv in STARTUP_COMMANDS:
        heavy = heavy_imports(_RUN_COMMAND.format(argv=list(argv)), package)
        if heavy:
            found.append(f"vlpbench {' '.join(argv)} imports {', '.join(heavy)}: import them inside the functions "
                         "that need them")
    return found


def main() -> int:
    problems = [f"import cycle: {' ↔ '.join(c)}" for c in cycles(import_graph())] + oversized() + heavy_startup()
    for problem in problems:
        print(problem)
    print(f"{len(problems)} problem(s)" if problems else "no import cycle, no oversized module or function, "
          "no heavy import at start-up")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
