"""Shared fixtures: offline Hugging Face, a tiny experiment, an in-process CLI runner, throw-away plugins."""

from __future__ import annotations

import importlib
import os
import sys
import tempfile
import textwrap
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# One image store for the whole test session (shared by in-process runs and the processes tests start).
os.environ.setdefault("VLPBENCH_STORE_DIR", tempfile.mkdtemp(prefix="vlpbench-store-"))

REPO = Path(__file__).resolve().parents[1]

TINY_EXPERIMENT = """\
name: tiny
seeds: [0]
data: {name: synthcxr, image_size: 32, pretrain_size: 96, train_size: 64, val_size: 32, test_size: 48}
model:
  image_encoder: {name: timm, arch: resnet18, patch_reduction: 8, global_reduction: 8}
  text_encoder: {name: bert, layers: 1, hidden: 32, heads: 2, vocab_size: 300}
  embed_dim: 32
objective:
  global: {name: infonce, temperature: 0.1}
pretrain: {epochs: 2, batch_size: 16, lr: 1.0e-3, threads: 1, augment: true}
tasks:
  - {name: linear_probe, fractions: [0.1, 1.0], max_epochs: 5}
  - {name: zero_shot}
  - {name: retrieval}
"""


#: A tiny run with one linear-probe task, for tests that submit or sweep it (Slurm, Ray Tune).
TINY_RUN = """\
name: {name}
seeds: {seeds}
data: {{name: synthcxr, image_size: 32, pretrain_size: {pretrain_size}, train_size: 48, val_size: 32, test_size: 16}}
model:
  image_encoder: {{name: timm, arch: resnet18, patch_reduction: 8, global_reduction: 8}}
  text_encoder: {{name: bert, layers: 1, hidden: 32, heads: 2, vocab_size: 300}}
  embed_dim: 32
objective:
  global: {{name: infonce, temperature: 0.1}}
pretrain: {{epochs: {epochs}, batch_size: 16, lr: 1.0e-3, threads: 1, augment: false}}
tasks:
  - {{name: linear_probe, fractions: [1.0], max_epochs: 3}}
"""


def write_tiny_run(folder: Path, name: str, seeds: str = "[0]", pretrain_size: int = 64, epochs: int = 2,
                   extra: str = "") -> Path:
    """``folder/<name>.yaml``: :data:`TINY_RUN` followed by ``extra`` (more top-level sections)."""
    path = folder / f"{name}.yaml"
    path.write_text(TINY_RUN.format(name=name, seeds=seeds, pretrain_size=pretrain_size, epochs=epochs) + extra)
    return path


@pytest.fixture
def tiny_experiment(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_EXPERIMENT)
    return path


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""
    from vlpbench.cli import main

    def invoke(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return invoke


class ThrowawayPlugins:
    """Plugin modules written for one test into a folder on ``sys.path``, and the ways to make
    vlpbench see them; :meth:`close` (the fixture's teardown) forgets the modules again.

    - :meth:`module` writes ``<module>.py`` and returns its entry point (for ``load_plugins``);
    - :meth:`install` makes entry points part of this process's plugins (``get_plugins``), beside
      the installed ones unless ``installed=False``;
    - :meth:`share` names them in ``VLPBENCH_PLUGIN_MODULES`` (and the folder in ``PYTHONPATH``),
      so the CLI and the processes it starts load them as if installed.

    The environment and the loaded plugins are restored by ``monkeypatch`` after the test.
    """

    def __init__(self, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.folder, self.monkeypatch = folder, monkeypatch
        self.modules: list[str] = []
        monkeypatch.syspath_prepend(str(folder))

    def module(self, module: str, body: str, name: str | None = None) -> metadata.EntryPoint:
        """Write ``module`` (``body`` dedented); its entry point is called ``name`` (default: the module)."""
        (self.folder / f"{module}.py").write_text(textwrap.dedent(body))
        importlib.invalidate_caches()  # the folder's listing may be cached from an earlier module
        self.modules.append(module)
        return metadata.EntryPoint(name=name or module, value=module, group="vlpbench")

    def install(self, *entry_points: metadata.EntryPoint, installed: bool = True) -> Any:
        """Load the plugins with these entry points as this process's plugin set; return it."""
        import vlpbench.core.plugins as plugins_module

        base = list(metadata.entry_points(group="vlpbench")) if installed else []
        loaded = plugins_module.load_plugins(entry_points=[*base, *entry_points])
        self.monkeypatch.setattr(plugins_module, "_LOADED", loaded)
        return loaded

    def share(self, *entry_points: metadata.EntryPoint) -> None:
        """Name these plugins in ``VLPBENCH_PLUGIN_MODULES`` for this process and its children."""
        import vlpbench.core.plugins as plugins_module

        self.monkeypatch.setenv("VLPBENCH_PLUGIN_MODULES", ",".join(f"{ep.name}={ep.value}" for ep in entry_points))
        self.monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(self.folder), os.environ.get("PYTHONPATH", "")]))
        self.monkeypatch.setattr(plugins_module, "_LOADED", None)  # reloaded, with them, on next use

    def close(self) -> None:
        for module in self.modules:
            sys.modules.pop(module, None)


@pytest.fixture
def throwaway_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A :class:`ThrowawayPlugins` writing into ``tmp_path/plugins``."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    plugins = ThrowawayPlugins(folder, monkeypatch)
    yield plugins
    plugins.close()
