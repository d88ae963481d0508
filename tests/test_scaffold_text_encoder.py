"""The scaffold's text encoder template (issue 21): a freshly written plugin with only that kind passes
check-plugin, pretrains and scores the text tasks in a tiny run; a template that breaks the interface
fails check-plugin. The plugin is put on sys.path with a made-up entry point (no pip install), so
this runs in the fast suite; tests/test_scaffold.py installs the full scaffold for real."""

from __future__ import annotations

import json
import math
import sys
from importlib import metadata
from pathlib import Path

import pytest

import vlpbench.core.plugins as plugins_module
from vlpbench.devkit.conformance import check_plugin, format_results
from vlpbench.core.plugins import load_plugins
from vlpbench.devkit.scaffold import KINDS, new_plugin

TEXT_CHECK = "tokenizes and gives text features"


def _register(root: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(root / "src"))
    entry_points = list(metadata.entry_points(group="vlpbench"))
    entry_points.append(metadata.EntryPoint(name=name, value=f"vlpbench_{name}.plugin", group="vlpbench"))
    monkeypatch.setattr(plugins_module, "_LOADED", load_plugins(entry_points=entry_points))


@pytest.fixture
def text_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Write the scaffold with the text encoder only and register it; yield a function that first
    applies a source edit (old → new) to the template, for the broken cases."""
    root = new_plugin("scaftext", tmp_path, ["text_encoder"])
    module = root / "src" / "vlpbench_scaftext" / "text_encoder.py"

    def install(edit: tuple[str, str] | None = None) -> Path:
        if edit is not None:
            source = module.read_text()
            assert edit[0] in source, f"the template no longer contains {edit[0]!r}: update this test"
            module.write_text(source.replace(edit[0], edit[1]))
        _register(root, "scaftext", monkeypatch)
        return root

    yield install
    for loaded in [m for m in sys.modules if m.startswith("vlpbench_scaftext")]:
        sys.modules.pop(loaded)


def test_text_encoder_is_a_scaffold_kind_and_the_cli_accepts_every_kind(tmp_path: Path, cli) -> None:
    assert "text_encoder" in KINDS
    for number, kind in enumerate(KINDS):  # the CLI's --kind choices and the scaffold's kinds agree
        code, _, err = cli("new-plugin", f"kind{number}", "--kind", kind, "--dest", str(tmp_path))
        assert code == 0, err
    name = f"kind{KINDS.index('text_encoder')}"
    assert (tmp_path / f"vlpbench-{name}" / "src" / f"vlpbench_{name}" / "text_encoder.py").is_file()
    experiment = (tmp_path / f"vlpbench-{name}" / "experiments" / f"{name}.yaml").read_text()
    assert f"{name}-text: {{model.text_encoder: {{name: {name}.text_encoder" in experiment


def test_scaffolded_text_encoder_passes_check_plugin(text_plugin) -> None:
    text_plugin()
    results = check_plugin("scaftext")
    assert all(r.status == "pass" for r in results), format_results(results)
    checks = {r.check for r in results if r.component == "scaftext.text_encoder"}
    assert {"imports", "builds from defaults", TEXT_CHECK} <= checks


@pytest.mark.parametrize("edit, reason", [
    (("sentence_mask=sentence_mask,", "sentence_mask=sentence_mask[:, :1],"), "sentence_mask"),
    (("word_mask=sentence_index >= 0,", "word_mask=(sentence_index >= 0).long(),"), "bool"),
    (("word_emb=words,", "word_emb=words[..., :8],"), "word_emb"),
    (("global_emb=global_emb,", "global_emb=global_emb / 0,"), "not finite"),
])
def test_a_template_that_breaks_the_interface_fails_check_plugin(text_plugin, edit, reason) -> None:
    text_plugin(edit)
    result = next(r for r in check_plugin("scaftext") if r.check == TEXT_CHECK)
    assert result.status == "FAIL" and reason in result.message, result.message


def test_scaffolded_text_encoder_pretrains_and_scores_the_text_tasks(text_plugin, tmp_path: Path, cli) -> None:
    """One epoch with the template as the text encoder, with the text options the engine calls
    (frozen layers, gradient checkpointing, the sentence shuffle), then zero-shot and retrieval, which
    tokenize prompts and reports with it; the checkpoint carries its vocabulary."""
    text_plugin()
    experiment = tmp_path / "tiny.yaml"
    experiment.write_text(
        "name: tiny\nseeds: [0]\n"
        "data: {name: synthcxr, image_size: 32, pretrain_size: 64, train_size: 16, val_size: 8, test_size: 16}\n"
        "model:\n  image_encoder: {name: timm, arch: resnet18, patch_reduction: 8, global_reduction: 8}\n"
        "  text_encoder: {name: scaftext.text_encoder, layers: 2, hidden: 32, max_tokens: 64}\n  embed_dim: 32\n"
        "pretrain: {epochs: 1, batch_size: 16, augment: false, freeze_text_layers: 1, grad_checkpointing: true,\n"
        "           sentence_shuffle: true}\n"
        "tasks:\n  - {name: zero_shot}\n  - {name: retrieval}\n"
        "variants:\n  text: {}\n")
    code, out, err = cli("run", str(experiment), "--results", str(tmp_path / "results"), "--quiet")
    assert code == 0, err + out
    run = next((tmp_path / "results" / "tiny" / "runs").glob("text__*"))
    steps = json.loads((run / "history.json").read_text())["steps"]
    assert steps and all(math.isfinite(v) for row in steps for v in row.values() if isinstance(v, float))
    metrics = json.loads((run / "metrics.json").read_text())
    for task in ("zero_shot", "retrieval"):
        assert metrics[task].get("scores") and not metrics[task].get("error"), metrics[task]
    import torch

    model = torch.load(next(run.rglob("final.pt")), map_location="cpu", weights_only=False)["model"]
    assert any(key.startswith("text_encoder.") and key.endswith("_extra_state") for key in model), list(model)[:20]
