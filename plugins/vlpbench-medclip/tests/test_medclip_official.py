"""MedCLIP's label-similarity targets against a per-sample float64 port of the official loss
(``medclip/losses.py:34-84``: S = y^img y^txtᵀ, softmax targets of temperature 1, soft cross-entropy
averaged over both directions; logits ``v tᵀ · exp(s)``, ``modeling_medclip.py:188-232``), loss and
gradients within 1e-6; ``preset: medclip`` end to end on ragged reports; the cleaner cosine option;
refusal at ``validate`` of a dataset without labels."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import Tensor

from vlpbench.plugin_api import (AlignmentInputs, Batch, BuildContext, DirectionAdjustment, ImageFeatures, InfoNCELoss,
                                 SigmoidLoss)
from vlpbench.devkit.testing import feature_inputs
from vlpbench.devkit.testing_official import (CORPUS, assert_close_gradients, build_preset, gradients, preset_config,
                                       ragged_step)
from vlpbench_medclip.miner import LabelSimilarityMiner, soft_affinity, with_no_finding

NONE = DirectionAdjustment()


def official_soft_xent(logits: Tensor, target: Tensor) -> Tensor:
    """ImageTextContrastiveLoss._soft_xent, losses.py:82-84, row by row."""
    total = logits.new_zeros(())
    for i in range(logits.shape[0]):
        total = total - (target[i] * torch.log_softmax(logits[i], dim=0)).sum()
    return total / logits.shape[0]


def official_medclip_loss(img_embeds: Tensor, text_embeds: Tensor, logit_scale: Tensor,
                          img_labels: Tensor, text_labels: Tensor) -> Tensor:
    """MedCLIPModel.compute_logits (modeling_medclip.py:226-232) + ImageTextContrastiveLoss with labels
    (losses.py:60-76), one text view. Embeddings normalised without eps (modeling_medclip.py:207,217)."""
    img = torch.stack([e / e.norm() for e in img_embeds])
    txt = torch.stack([e / e.norm() for e in text_embeds])
    scale = logit_scale.clamp(0, 4.6052).exp()
    logits_per_text = scale * txt @ img.t()
    logits_per_image = logits_per_text.t()
    label_sim = img_labels @ text_labels.t()  # losses.py:68-72 (integer dot products)
    img_target = torch.softmax(label_sim, dim=1)  # :74
    text_target = torch.softmax(label_sim.t(), dim=1)  # :75
    return (official_soft_xent(logits_per_image, img_target) + official_soft_xent(logits_per_text, text_target)) / 2


def random_labels(generator: torch.Generator, batch: int, findings: int) -> Tensor:
    labels = (torch.rand(batch, findings, generator=generator) < 0.35).double()
    labels[0] = 0.0  # a normal study
    labels[1] = labels[2]  # two reports with the same findings
    return labels


def test_affinity_rows_and_columns_normalise_to_the_official_softmaxes() -> None:
    generator = torch.Generator().manual_seed(0)
    y = with_no_finding(random_labels(generator, 7, 5))
    s = y @ y.t()
    a = soft_affinity(s, 1.0)
    assert torch.allclose(a / a.sum(1, keepdim=True), torch.softmax(s, dim=1), atol=1e-12)
    assert torch.allclose(a.t() / a.t().sum(1, keepdim=True), torch.softmax(s.t(), dim=1), atol=1e-12)
    assert a.max().item() == 1.0 and (a > 0).all()
    assert (a.diagonal() >= a.max(1).values - 1e-12).all()  # with 0/1 labels the pair is its row's maximum


@pytest.mark.parametrize("batch", [1, 3, 8])
def test_label_similarity_with_infonce_equals_the_official_loss(batch: int) -> None:
    generator = torch.Generator().manual_seed(batch)
    dim = 12
    image = torch.randn(batch, dim, generator=generator, dtype=torch.float64).requires_grad_()
    text = torch.randn(batch, dim, generator=generator, dtype=torch.float64).requires_grad_()
    labels = random_labels(generator, batch, 5) if batch > 2 else torch.zeros(batch, 5, dtype=torch.float64)
    inputs = feature_inputs(image, text, labels=labels, dtype=torch.float64)
    miner = LabelSimilarityMiner(LabelSimilarityMiner.Params(), BuildContext(label_names=tuple("abcde")))
    loss = InfoNCELoss(InfoNCELoss.Params(temperature=0.07)).double()
    positives = miner(inputs)
    assert not positives.affinity.requires_grad
    ours = loss(image, text, positives, NONE, NONE)
    y = with_no_finding(labels)
    official = official_medclip_loss(image, text, loss.log_scale, y, y)
    assert ours.item() == pytest.approx(official.item(), abs=1e-9)
    leaves = [image, text, loss.log_scale]
    for a, b in zip(torch.autograd.grad(ours, leaves), torch.autograd.grad(official, leaves)):
        assert (a - b).abs().max().item() <= 1e-6


def test_target_mass_by_hand() -> None:
    """BASELINES.md's example: S row (1, 0, …, 0) over B columns gives the pair e/(e + B − 1)."""
    labels = torch.zeros(5, 2)
    labels[0, 0] = 1.0  # only image 0 has finding 0; the others are normal
    miner = LabelSimilarityMiner(LabelSimilarityMiner.Params(no_finding=False))
    a = miner(feature_inputs(labels=labels, batch_size=5)).affinity
    targets = a / a.sum(1, keepdim=True)
    assert targets[0, 0].item() == pytest.approx(math.e / (math.e + 4), abs=1e-6)
    assert targets[1].tolist() == pytest.approx([0.2] * 5)  # all-zero labels: uniform targets


def test_no_finding_column_makes_normal_studies_match_and_is_skipped_when_the_dataset_has_one() -> None:
    labels = torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0]])
    default = LabelSimilarityMiner(LabelSimilarityMiner.Params(), BuildContext(label_names=("a", "b")))
    assert with_no_finding(labels)[:, -1].tolist() == [1.0, 1.0, 0.0]
    a = default(feature_inputs(labels=labels, batch_size=3)).affinity
    assert a[0, 1].item() == 1.0 and a[0, 2].item() == pytest.approx(math.exp(-1))
    named = LabelSimilarityMiner(LabelSimilarityMiner.Params(), BuildContext(label_names=("a", "No_Finding")))
    assert not named.append_no_finding


def test_cosine_option_gives_the_contracts_unit_diagonal_and_oracle_positives() -> None:
    labels = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    miner = LabelSimilarityMiner(LabelSimilarityMiner.Params(similarity="cosine", temperature=0.1),
                                 BuildContext(label_names=("a", "b", "c")))
    a = miner(feature_inputs(labels=labels, batch_size=4)).affinity
    assert a.diagonal().tolist() == pytest.approx([1.0] * 4)
    assert a[0, 1].item() == pytest.approx(1.0)  # identical finding sets
    assert a[0, 2].item() == pytest.approx(math.exp((1 / math.sqrt(2) - 1) / 0.1), rel=1e-6)
    assert a[0, 3].item() == pytest.approx(math.exp(-10), rel=1e-6)  # normal vs abnormal: cosine 0


def test_usable_with_the_sigmoid_loss_through_the_contract() -> None:
    """Sigmoid losses threshold A at ½: with the official dot products only the most similar pairs."""
    labels = torch.tensor([[1.0, 1.0], [1.0, 1.0], [1.0, 0.0], [0.0, 0.0]])
    inputs = feature_inputs(labels=labels, batch_size=4)
    positives = LabelSimilarityMiner(LabelSimilarityMiner.Params(), BuildContext(label_names=("a", "b")))(inputs)
    assert (positives.affinity > 0.5).tolist() == [[True, True, False, False], [True, True, False, False],
                                                   [False, False, False, False], [False, False, False, False]]
    value = SigmoidLoss(SigmoidLoss.Params())(inputs.image.global_emb, inputs.text.global_emb, positives, NONE, NONE)
    assert torch.isfinite(value)


def test_medclip_preset_equals_the_official_total_on_ragged_reports() -> None:
    dim, grid, findings = 32, (2, 2), 4
    context = BuildContext(embed_dim=dim, image_size=16, patch_grid=grid, corpus=CORPUS,
                           label_names=tuple(f"f{i}" for i in range(findings)))
    modules = build_preset(preset_config("medclip"), context)
    assert modules.text.params.pooling == "mean"
    generator = torch.Generator().manual_seed(4)
    for _ in range(2):
        step = ragged_step(generator, batch=6, hidden=32, dim=dim, patches=4, image_size=16, corpus_size=len(CORPUS))
        labels = random_labels(generator, 6, findings)
        text = modules.text.features(step.hidden, step.attention_mask, step.sentence_index)
        image = ImageFeatures(step.image_global, step.patches, grid, step.image_global, step.patches)
        batch = Batch(step.images, torch.zeros_like(step.sentence_index), step.attention_mask, step.sentence_index,
                      labels, step.index)
        ours = modules.objective(AlignmentInputs(image, text, batch, 0.5))
        assert set(ours.terms) == {"global"}
        y = with_no_finding(labels)
        official = official_medclip_loss(step.image_global, text.global_emb,
                                         modules.objective.global_loss.log_scale, y, y)
        assert ours.total.item() == pytest.approx(official.item(), abs=1e-9)
        assert_close_gradients(gradients(ours.total, step, modules), gradients(official, step, modules))


def test_validate_refuses_a_dataset_without_labels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vlpbench.config.loader import load_experiment
    from vlpbench.data.synthcxr_source import SynthCXRSource
    from vlpbench.core.errors import ConfigError

    path = tmp_path / "medclip.yaml"
    path.write_text("name: t\nseeds: [0]\ndata: {name: synthcxr}\ntasks: [{name: retrieval}]\n"
                    "variants:\n  medclip: {preset: medclip}\n")
    load_experiment(path)  # SynthCXR has labels: accepted
    monkeypatch.setattr(SynthCXRSource, "provides", SynthCXRSource.provides - {"labels"})
    with pytest.raises(ConfigError, match="medclip.label_similarity' needs labels from the dataset"):
        load_experiment(path)
