"""Free combination of the method plugins' components, and combinations that cannot work."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch

from vlpbench.config.loader import load_experiment
from vlpbench.config.schema import RunConfig
from vlpbench.engine.model import build_run
from vlpbench.core.errors import ConfigError
from vlpbench.core.plugins import get_registry

TINY_DATA = {"name": "synthcxr", "image_size": 32, "pretrain_size": 64}
TINY_TEXT = {"name": "bert", "layers": 1, "hidden": 32, "heads": 2}
HEADS = ["fane.tcsap", "sista.sparse_token", "cmcgns.cross_attention"]


@pytest.mark.parametrize("arch", ["resnet18", "vit_tiny_patch16_224"])
def test_every_local_head_and_cm_mir_train_with_cnn_and_vit(arch: str) -> None:
    config = RunConfig.model_validate({
        "data": TINY_DATA,
        "model": {"image_encoder": {"name": "timm", "arch": arch}, "text_encoder": TINY_TEXT, "embed_dim": 32},
        "objective": {"local_heads": [{"name": h} for h in HEADS],
                      "auxiliaries": [{"name": "cmcgns.mir", "heads": 4}]},
        "pretrain": {"batch_size": 16},
    })
    built = build_run(config, get_registry(), seed=0)
    batch = next(built.pretrain.epoch_batches(0, 0, 16, augment=False))
    out = built.model(batch, progress=0.5)
    out.total.backward()
    assert torch.isfinite(out.total)
    labels = {key.split("/")[0] for key in out.terms}
    assert set(HEADS) | {"cmcgns.mir", "global"} <= labels
    encoder_grads = [p.grad for p in built.model.image_encoder.parameters() if p.grad is not None]
    assert encoder_grads and all(torch.isfinite(g).all() for g in encoder_grads)


def test_any_miner_with_any_global_loss_and_stacked_weightings() -> None:
    for loss in ("infonce", "sigmoid", "fane.sigmoid_mp"):
        for miner in ("fane.adaptive_miner", "sista.fn_elimination", "oracle"):
            config = RunConfig.model_validate({
                "data": TINY_DATA, "model": {"text_encoder": TINY_TEXT, "embed_dim": 32},
                "objective": {"global": {"name": loss}, "positive_miner": {"name": miner},
                              "negative_weighting": [{"name": "fane.hard_negative"},
                                                     {"name": "cmcgns.cluster_negatives", "clusters": 4,
                                                      "queue_size": 16, "init_threshold": 1.0,
                                                      "skip_initialising_step": False}]},
                "pretrain": {"batch_size": 16},
            })
            built = build_run(config, get_registry(), seed=0)
            batch = next(built.pretrain.epoch_batches(0, 0, 16, augment=False))
            out = built.model(batch, progress=0.5)
            out.total.backward()
            assert torch.isfinite(out.total), (loss, miner)
            assert "cmcgns.cluster_negatives/fn" in out.terms and "fane.hard_negative/hn" in out.terms


GLOBAL_ONLY_TEXT = """
from vlpbench.core.hookspecs import hookimpl
from vlpbench.models.text_bert import BertTextEncoder

class GlobalOnlyText(BertTextEncoder):
    provides = frozenset({"global"})

@hookimpl
def vlpbench_register(registrar):
    registrar.add("text_encoder", "globalonly.text", "globalonly_plugin:GlobalOnlyText", "no sentences")
"""


def test_a_head_that_needs_sentences_is_rejected_with_an_encoder_without_them(tmp_path: Path, throwaway_plugins, cli) -> None:
    throwaway_plugins.install(throwaway_plugins.module("globalonly_plugin", GLOBAL_ONLY_TEXT, name="globalonly"))
    experiment = tmp_path / "exp.yaml"
    experiment.write_text(textwrap.dedent("""\
        name: combo
        data: {name: synthcxr, image_size: 32}
        model:
          text_encoder: {name: globalonly.text}
        variants:
          tcsap: {objective.local_heads: [{name: fane.tcsap}]}
    """))
    with pytest.raises(ConfigError, match="fane.tcsap' needs sentences from the text encoder"):
        load_experiment(experiment)
    code, _, err = cli("validate", str(experiment))
    assert code == 2 and "variant 'tcsap'" in err and "Traceback" not in err


def test_a_variant_overrides_its_preset(tmp_path: Path) -> None:
    experiment = tmp_path / "exp.yaml"
    experiment.write_text(textwrap.dedent("""\
        name: presets
        data: {name: synthcxr, image_size: 32}
        variants:
          fane: {preset: fane}
          fane-no-heads: {preset: fane, objective.local_heads: []}
          cmcgns: {preset: cmcgns}
    """))
    runs = {r.variant: r.config["objective"] for r in load_experiment(experiment).runs}
    assert runs["fane"]["positive_miner"]["name"] == "fane.adaptive_miner"
    assert [h["name"] for h in runs["fane"]["local_heads"]] == ["fane.tcsap"]
    assert runs["fane-no-heads"]["local_heads"] == [] and runs["fane-no-heads"]["global"]["name"] == "fane.sigmoid_mp"
    assert runs["cmcgns"]["auxiliaries"][0]["start"] == pytest.approx(1 / 3, abs=1e-3)
    assert runs["fane"]["positive_miner"]["kappa"] == 0.95  # component defaults are filled in


NO_BOXES_DATA = """
from vlpbench.core.hookspecs import hookimpl
from vlpbench.data.synthcxr_source import SynthCXRSource

class LabelsOnly(SynthCXRSource):
    provides = frozenset({"images", "reports", "sentences", "labels"})

@hookimpl
def vlpbench_register(registrar):
    registrar.add("dataset", "labelsonly.data", "labelsonly_plugin:LabelsOnly", "no masks, no boxes")
"""


def test_a_task_whose_targets_the_dataset_lacks_is_rejected(tmp_path: Path, throwaway_plugins) -> None:
    throwaway_plugins.install(throwaway_plugins.module("labelsonly_plugin", NO_BOXES_DATA, name="labelsonly"))
    experiment = tmp_path / "exp.yaml"
    experiment.write_text(textwrap.dedent("""\
        name: tasks
        data: {name: synthcxr, image_size: 32}
        tasks:
          - {name: linear_probe, dataset: {name: labelsonly.data}}
          - {name: detection, dataset: {name: labelsonly.data}}
          - {name: segmentation, dataset: {name: labelsonly.data}}
    """))
    with pytest.raises(ConfigError) as info:
        load_experiment(experiment)
    message = str(info.value)
    assert "'detection' needs boxes from the dataset" in message and "'segmentation' needs masks" in message
    assert "linear_probe" not in message  # labels are there
