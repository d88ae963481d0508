"""Shared fixtures: offline Hugging Face, a tiny experiment, an in-process CLI runner."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

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
