"""new-plugin writes a plugin that installs, passes its own tests and check-plugin, and runs in an
experiment. It is installed into a throwaway folder on sys.path, so other tests' entry points are
untouched. Marked integration (a pip install and a pytest subprocess)."""

from __future__ import annotations

import ast
import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import vlpbench.core.plugins as plugins_module

pytestmark = pytest.mark.integration


@pytest.fixture
def installed_demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli):
    code, out, err = cli("new-plugin", "demo", "--dest", str(tmp_path))
    assert code == 0, err
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(site), str(tmp_path / "vlpbench-demo")], check=True, capture_output=True)
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    monkeypatch.setattr(plugins_module, "_LOADED", None)
    yield tmp_path / "vlpbench-demo", site
    for module in [m for m in sys.modules if m.startswith("vlpbench_demo")]:
        sys.modules.pop(module)
    plugins_module.reset()


def test_scaffolded_plugin_installs_passes_its_tests_and_the_checks_and_runs(installed_demo, cli, tmp_path: Path) -> None:
    root, site = installed_demo
    code, out, _ = cli("plugins")
    assert code == 0 and "demo.miner" in out and "demo.head" in out and "demo.text_encoder" in out and "[demo]" in out
    code, out, _ = cli("check-plugin", "demo")
    assert code == 0, out
    assert "demo.text_encoder" in out and "tokenizes and gives text features" in out  # the text template was checked
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", str(root / "tests")],
                           capture_output=True, text=True, env=env, cwd=root)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    # every test the scaffold wrote ran and passed (none failed, none skipped, none left uncollected)
    written = {node.name for path in (root / "tests").glob("test_*.py") for node in ast.parse(path.read_text()).body
               if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")}
    outcomes = dict((name, outcome) for outcome, name in
                    re.findall(r"^(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)\S* \S+::(\w+)", tests.stdout, re.M))
    assert written and outcomes == dict.fromkeys(written, "PASSED"), tests.stdout
    code, out, err = cli("run", str(root / "experiments" / "demo.yaml"), "--results", str(tmp_path / "results"), "--quiet")
    assert code == 0, err
    assert "| demo " in out and "| clip " in out and "| demo-encoder " in out and "| demo-text " in out
    metrics = next((tmp_path / "results" / "demo" / "runs").glob("demo__*/metrics.json")).read_text()
    assert '"demo.task"' in metrics  # the scaffolded task scored the run
    provenance = next((tmp_path / "results" / "demo" / "runs").glob("demo__*/provenance.json")).read_text()
    assert '"demo": "0.1.0"' in provenance  # the third-party plugin's version travels with its results


def test_new_plugin_refuses_to_overwrite(tmp_path: Path, cli) -> None:
    assert cli("new-plugin", "twice", "--dest", str(tmp_path))[0] == 0
    code, _, err = cli("new-plugin", "twice", "--dest", str(tmp_path))
    assert code == 2 and "never overwrites" in err
    code, _, err = cli("new-plugin", "Bad-Name", "--dest", str(tmp_path))
    assert code == 2 and "lowercase" in err
