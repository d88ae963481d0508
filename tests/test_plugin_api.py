"""The public surface: ``vlpbench.plugin_api`` for plugins, ``vlpbench.devkit.testing`` for their tests,
``vlpbench.api`` for scripts. Every public name resolves; the shipped plugins and the ``new-plugin``
scaffold import vlpbench only through it; importing it (and a plugin's ``plugin.py``) imports no torch."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import vlpbench.plugin_api as plugin_api
from vlpbench.devkit.scaffold import KINDS, new_plugin

REPO = Path(__file__).resolve().parents[1]
PLUGIN_SOURCES = sorted(REPO.glob("plugins/*/src/**/*.py"))
PUBLIC_MODULES = ["vlpbench.plugin_api", "vlpbench.devkit.testing", "vlpbench.devkit.testing_official", "vlpbench.api"]


def vlpbench_imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(module, names, line) of every import of a ``vlpbench`` module in ``path``, at any depth."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "vlpbench" or node.module.startswith("vlpbench."):
                found.append((node.module, [a.name for a in node.names], node.lineno))
        elif isinstance(node, ast.Import):
            found += [(a.name, [], node.lineno) for a in node.names
                      if a.name == "vlpbench" or a.name.startswith("vlpbench.")]
    return found


def offending_imports(paths: list[Path], allowed: set[str]) -> list[str]:
    """Imports of vlpbench modules outside ``allowed``, and names ``plugin_api`` does not export."""
    problems = []
    for path in paths:
        for module, names, line in vlpbench_imports(path):
            where = f"{path.relative_to(REPO) if path.is_relative_to(REPO) else path.name}:{line}"
            if module not in allowed:
                problems.append(f"{where} imports {module}")
            elif module == "vlpbench.plugin_api":
                problems += [f"{where} imports {n} (not in plugin_api.__all__)" for n in names
                             if n not in plugin_api.__all__]
    return problems


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_every_public_name_resolves(module_name: str) -> None:
    module = importlib.import_module(module_name)
    assert len(module.__all__) == len(set(module.__all__)), "duplicates in __all__"
    missing = [name for name in module.__all__ if getattr(module, name, None) is None]
    assert not missing, f"{module_name}.__all__ names what it does not define: {missing}"


def test_plugin_api_exports_every_lazy_name_and_nothing_unlisted() -> None:
    eager = {"hookimpl", "Registrar", "BuildContext", "UserError", "ConfigError", "DataError", "Component"}
    assert set(plugin_api.__all__) == eager | set(plugin_api._LAZY)
    assert set(plugin_api.__all__) <= set(dir(plugin_api))
    # a lazy name is the internal object itself, not a copy: isinstance checks across the two paths hold
    from vlpbench.core.features import AlignmentInputs
    from vlpbench.objective.contracts import Positives

    assert plugin_api.AlignmentInputs is AlignmentInputs and plugin_api.Positives is Positives
    with pytest.raises(AttributeError, match="__all__"):
        plugin_api.Objective  # noqa: B018  (internal: not part of the plugin API)


def test_shipped_plugins_import_vlpbench_only_through_the_plugin_api() -> None:
    assert len({p.parts[-4] for p in PLUGIN_SOURCES}) >= 7, "the plugins' sources were not found"
    assert not offending_imports(PLUGIN_SOURCES, {"vlpbench.plugin_api"})


def test_the_scaffold_imports_vlpbench_only_through_the_public_modules(tmp_path: Path) -> None:
    root = new_plugin("apicheck", tmp_path, list(KINDS))
    sources = sorted((root / "src").rglob("*.py"))
    tests = sorted((root / "tests").rglob("*.py"))
    assert len(sources) == len(KINDS) + 2  # one module per kind, __init__.py, plugin.py
    assert sum(len(vlpbench_imports(p)) for p in sources) >= len(KINDS) + 1
    assert not offending_imports(sources, {"vlpbench.plugin_api"})
    assert not offending_imports(tests, {"vlpbench.plugin_api", "vlpbench.devkit.testing"})


def test_the_check_sees_an_internal_import(tmp_path: Path) -> None:
    bad = tmp_path / "a" / "b" / "c" / "bad.py"
    bad.parent.mkdir(parents=True)
    bad.write_text("def f():\n    from vlpbench.core.features import Batch\n    import vlpbench.objective.scope\n"
                   "from vlpbench.plugin_api import hookimpl, Objective\n")
    assert [p.split(" ", 1)[1] for p in offending_imports([bad], {"vlpbench.plugin_api"})] == [
        "imports Objective (not in plugin_api.__all__)", "imports vlpbench.core.features",
        "imports vlpbench.objective.scope"]


def test_the_plugin_api_and_the_plugins_registration_modules_import_no_torch() -> None:
    registrations = sorted(str(p) for p in REPO.glob("plugins/*/src/*/plugin.py"))
    assert len(registrations) >= 7
    code = ("import runpy, sys\nimport vlpbench.plugin_api as api\n"
            f"for path in {registrations!r}:\n    runpy.run_path(path)\n"
            "api.hookimpl, api.Registrar, api.BuildContext, api.ConfigError, api.Component\n"
            "print('heavy:', sorted(m for m in ('torch', 'numpy', 'pydantic') if m in sys.modules))\n"
            "api.AlignmentInputs\nprint('after first use:', 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["heavy: []", "after first use: True"]
