"""Every term of every variant of the default ablation is active (a short run must not silently
degrade a method to CLIP): the shipped experiment, shrunk to a tiny size, one epoch each."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO
from vlpbench.config.loader import load_experiment
from vlpbench.config.schema import RunConfig
from vlpbench.engine.model import build_run
from vlpbench.engine.pretrain import pretrain
from vlpbench.engine.rundir import RunDir
from vlpbench.core.plugins import get_registry

#: The loss terms each component must contribute (besides the global loss).
EXPECTED_TERMS = {
    "fane.hard_negative": {"hn"},
    "cmcgns.cluster_negatives": {"fn"},
    "fane.tcsap": {"tc", "spa"},
    "sista.sparse_token": {"sta"},
    "cmcgns.cross_attention": {"patch", "sentence", "fn"},
    "cmcgns.mir": {"rec"},
    "gloria.local": {"local"},
    "mgca.cta": {"local"},
    "mgca.prototypes": {"proto"},
}
TINY = {"image_size": 32, "pretrain_size": 256, "train_size": 32, "val_size": 16, "test_size": 16}

ABLATION = load_experiment(REPO / "experiments" / "ablation.yaml", seeds=[0])


def shrink(config: dict) -> RunConfig:
    config = copy.deepcopy(config)
    config["data"].update(TINY)
    config["model"]["text_encoder"].update(layers=1, hidden=32, heads=2)
    config["model"]["image_encoder"]["arch"] = "resnet18"
    config["pretrain"].update(epochs=1, batch_size=16, threads=1)
    return RunConfig.model_validate(config)


@pytest.mark.parametrize("spec", ABLATION.runs, ids=[r.variant for r in ABLATION.runs])
def test_every_term_of_the_variant_is_active(spec, tmp_path: Path) -> None:
    config = shrink(spec.config)
    built = build_run(config, get_registry(), seed=0)
    result = pretrain(built.model, built.pretrain, config.pretrain, 0, RunDir(tmp_path), device=torch.device("cpu"), progress=False)
    active = result.active_steps
    assert active.get("global", 0) == result.steps
    objective = config.objective
    components = [(s.name, s.name) for s in objective.negative_weighting]
    components += [(s.name, s.name) for s in objective.local_heads + objective.auxiliaries]
    for name, label in components:
        for term in EXPECTED_TERMS.get(name, ()):
            assert active.get(f"{label}/{term}", 0) > 0, f"{spec.variant}: {label}/{term} never active ({active})"
    if objective.positive_miner.name != "identity":
        assert active.get("positive_miner", 0) > 0, f"{spec.variant}: the miner never changed a target"
    for aux in objective.auxiliaries:
        # a term with a start point is active from there to the end, not before
        expected = result.steps - int(aux.start * result.steps + 0.999999)
        for term in EXPECTED_TERMS[aux.name]:
            assert abs(active.get(f"{aux.name}/{term}", 0) - expected) <= 1, f"{spec.variant}: {aux.name}/{term}"
