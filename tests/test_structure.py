"""The package's layout holds (issue 23): no import cycle between vlpbench's modules, no module over
400 lines and no function over 60 (``scripts/check_structure.py``), and the former top-level paths
of moved public modules still import the moved module itself."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def structure():
    spec = importlib.util.spec_from_file_location("check_structure", REPO / "scripts" / "check_structure.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_import_cycle_between_vlpbench_modules(structure) -> None:
    graph = structure.import_graph()
    assert "vlpbench.core.registry" in graph and "vlpbench.core.errors" in graph["vlpbench.core.registry"]
    assert structure.cycles(graph) == []


def test_the_check_sees_a_cycle_and_ignores_what_runs_later(structure, tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from pkg.sub import c\n")  # its own package: no cycle
    (package / "sub" / "c.py").write_text("import pkg.sub\n")
    (package / "a.py").write_text("from pkg import b\n")
    (package / "b.py").write_text("try:\n    import pkg.a\nexcept ImportError:\n    pass\n")
    (package / "d.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.e\n"
                                  "def f():\n    import pkg.e\n")
    (package / "e.py").write_text("import pkg.d\n")
    assert structure.cycles(structure.import_graph(package)) == [["pkg.a", "pkg.b"]]


def test_no_module_over_400_lines_and_no_function_over_60(structure, tmp_path: Path) -> None:
    assert structure.oversized() == []
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "long.py").write_text("def f():\n" + "    x = 1\n" * 60 + "\n" * 340)
    assert [p.split(": ")[0] for p in structure.oversized(package)] == ["pkg/long.py", "pkg/long.py:1 f()"]


@pytest.mark.parametrize("old, new", [
    ("vlpbench.errors", "vlpbench.core.errors"), ("vlpbench.registry", "vlpbench.core.registry"),
    ("vlpbench.hookspecs", "vlpbench.core.hookspecs"), ("vlpbench.features", "vlpbench.core.features"),
    ("vlpbench.context", "vlpbench.core.context"), ("vlpbench.plugins", "vlpbench.core.plugins"),
    ("vlpbench.testing", "vlpbench.devkit.testing"), ("vlpbench.testing_official", "vlpbench.devkit.testing_official"),
    ("vlpbench.conformance", "vlpbench.devkit.conformance"),
])
def test_a_former_path_is_the_moved_module_itself(old: str, new: str) -> None:
    moved = importlib.import_module(new)
    assert importlib.import_module(old) is moved and sys.modules[old] is moved
    assert moved.__name__ == new


def test_the_repository_imports_only_the_new_paths() -> None:
    """Former paths are for code outside the repository: nothing here imports them."""
    former = ("errors", "registry", "hookspecs", "features", "context", "plugins", "testing", "testing_official",
              "conformance")
    import re

    pattern = re.compile(rf"(?:from|import) vlpbench\.({'|'.join(former)})\b")
    paths = [p for folder in ("vlpbench", "tests", "benchmarks", "plugins") for p in (REPO / folder).rglob("*.py")]
    shims = {REPO / "vlpbench" / f"{name}.py" for name in former}
    offending = [f"{p.relative_to(REPO)}: {m.group(0)}" for p in paths if p not in shims
                 for m in pattern.finditer(p.read_text())]
    assert offending == []


def test_the_start_up_commands_import_nothing_heavy(structure) -> None:
    """``vlpbench --help`` and ``vlpbench plugins`` stay fast: no torch, numpy, pydantic, … on their path."""
    assert structure.heavy_startup() == []


def test_the_start_up_check_sees_a_heavy_import(structure, tmp_path: Path) -> None:
    package = tmp_path / "vlpbench"
    (package / "cli").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "cli" / "__init__.py").write_text("import json\n\ndef main(argv):\n    if argv == ['plugins']:\n"
                                                "        import yaml\n    print(argv)\n")
    assert structure.heavy_imports("import vlpbench.cli", package) == []
    found = structure.heavy_startup(package)
    assert len(found) == 1 and found[0].startswith("vlpbench plugins imports yaml")
