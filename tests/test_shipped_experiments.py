"""The package ships its experiments: `vlpbench run quickstart` and `vlpbench init NAME` from an empty
folder with only the built wheel installed (issue 21)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
TINY = ["--set", "data.pretrain_size=48", "--set", "data.train_size=48", "--set", "data.val_size=32",
        "--set", "data.test_size=48", "--set", "pretrain.epochs=1", "--set", "pretrain.batch_size=16",
        "--set", "tasks.0.fractions=[1.0]", "--set", "tasks.0.max_epochs=2"]


def test_a_bare_name_finds_the_shipped_experiment_and_a_file_wins(tmp_path: Path, cli, monkeypatch) -> None:
    from vlpbench.config.shipped import resolve_experiment, shipped_experiments

    assert {"quickstart", "ablation"} <= set(shipped_experiments())
    monkeypatch.chdir(tmp_path)
    assert resolve_experiment("quickstart") == shipped_experiments()["quickstart"]
    code, out, err = cli("init", "quickstart")
    assert code == 0 and (tmp_path / "quickstart.yaml").read_text() == shipped_experiments()["quickstart"].read_text()
    code, out, err = cli("init", "quickstart")
    assert code == 2 and "exists already" in err
    (tmp_path / "quickstart").write_text("name: mine\n")  # a file in the folder is what the user means
    assert resolve_experiment("quickstart") == Path("quickstart")
    code, out, err = cli("run", "quickstrt", "--dry-run")
    assert code == 2 and "did you mean 'quickstart'" in err
    code, out, err = cli("run", "experiments/quickstart.yaml", "--dry-run")
    assert code == 2 and "`vlpbench run quickstart`" in err
    code, out, err = cli("init", "--list")
    assert code == 0 and "quickstart" in out and "ablation" in out


@pytest.mark.integration
def test_the_built_wheel_runs_shipped_experiments_from_an_empty_folder(tmp_path: Path) -> None:
    source = tmp_path / "source"
    for name in ("vlpbench", "experiments"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(REPO / name, source / name)
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-c", f"from setuptools import build_meta; build_meta.build_wheel({str(dist)!r})"],
                   cwd=source, check=True, capture_output=True)
    (wheel,) = dist.glob("vlpbench-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q",
                    "--no-deps", str(wheel)], check=True, capture_output=True)
    # the dependencies (torch, timm, ...) come from this interpreter's site-packages; vlpbench only from the wheel
    import site

    plugins = [str(path) for path in sorted((REPO / "plugins").glob("vlpbench-*/src"))]  # every variant's plugin
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(site.getsitepackages() + plugins), "HF_HUB_OFFLINE": "1"}
    empty = tmp_path / "empty"
    empty.mkdir()

    def vlpbench(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(venv / "bin" / "vlpbench"), *args], cwd=empty, env=env, capture_output=True,
                              text=True, timeout=900)

    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import vlpbench; print(vlpbench.__file__)"],
                           cwd=empty, env=env, capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(venv))
    listed = vlpbench("init", "--list")
    assert listed.returncode == 0 and "quickstart" in listed.stdout and "ablation" in listed.stdout
    plan = vlpbench("run", "ablation", "--seeds", "0", "--dry-run")
    assert plan.returncode == 0, plan.stderr
    variants = len(yaml.safe_load((REPO / "experiments" / "ablation.yaml").read_text())["variants"])
    assert f"runs: {variants} new" in plan.stdout and str(venv) in plan.stdout  # one seed of every variant
    done = vlpbench("run", "quickstart", "--quiet", *TINY)
    assert done.returncode == 0, done.stderr[-3000:]
    assert list((empty / "results" / "quickstart" / "runs").glob("base__seed0__*/metrics.json"))
    copied = vlpbench("init", "quickstart")
    assert copied.returncode == 0 and (empty / "quickstart.yaml").is_file()
    assert "name: quickstart" in (empty / "quickstart.yaml").read_text()


def test_the_readme_has_no_relative_links_that_break_on_pypi() -> None:
    """The README is the package's long description on PyPI, where a link to a repository path has
    nothing to point at: files are named as paths, links are absolute or in-page anchors."""
    import re

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    relative = [target for target in re.findall(r"\]\(([^)\s]+)\)", text)
                if not target.startswith(("http://", "https://", "#", "mailto:"))]
    assert relative == []
