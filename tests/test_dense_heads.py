"""k heads per fraction (``heads``) and the linear probes of the dense tasks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from vlpbench.board.resample import score
from vlpbench.core.context import BuildContext
from vlpbench.data.synthcxr_source import SynthCXRSource
from vlpbench.models.image_timm import TimmImageEncoder
from vlpbench.tasks.base import Encoders
from vlpbench.tasks.decoders import LinearProbeDecoder
from vlpbench.tasks.dense import head_seed
from vlpbench.tasks.detection import Detection, LinearFCOSHead, coco_matches, fold_heads
from vlpbench.tasks.segmentation import Segmentation

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tiny() -> tuple[SynthCXRSource, Encoders]:
    source = SynthCXRSource(SynthCXRSource.Params(image_size=32, pretrain_size=16, train_size=48, val_size=16,
                                                  test_size=24), None)
    torch.manual_seed(0)
    encoder = TimmImageEncoder(TimmImageEncoder.Params(arch="resnet18"), BuildContext(embed_dim=16, image_size=32))
    return source, Encoders(encoder)


def test_heads_are_one_count_or_one_per_fraction() -> None:
    assert Segmentation.Params(heads=[3, 1], fractions=[0.1, 1.0]).heads_at(0.1) == 3
    assert Detection.Params(heads=2).heads_at(1.0) == 2
    with pytest.raises(ValidationError, match="one count ≥ 1 per fraction"):
        Segmentation.Params(heads=[2, 1], fractions=[0.01, 0.1, 1.0])
    with pytest.raises(ValidationError, match="at least 1"):
        Detection.Params(heads=0)
    # runs from before the option keep their identity; a count is recorded
    assert "heads" not in Segmentation.Params().model_dump() and Detection.Params(heads=2).model_dump()["heads"] == 2


def test_max_epochs_is_one_count_or_one_per_fraction() -> None:
    params = Detection.Params(max_epochs=[7, 10, 10], fractions=[0.01, 0.1, 1.0])
    assert (params.epochs_at(0.01), params.epochs_at(1.0), Detection.Params(max_epochs=4).epochs_at(0.1)) == (7, 10, 4)
    with pytest.raises(ValidationError, match="max_epochs .* one count ≥ 1 per fraction"):
        Segmentation.Params(max_epochs=[3, 2], fractions=[0.01, 0.1, 1.0])
    with pytest.raises(ValidationError, match="max_epochs .* one count ≥ 1 per fraction"):
        Detection.Params(max_epochs=0)
    assert Detection.Params(max_epochs=5).model_dump()["max_epochs"] == 5  # a count's identity is unchanged


@pytest.mark.parametrize("task", [Segmentation, Detection])
def test_per_fraction_epochs_train_each_fraction_as_its_single_count_does(
        task: type, tiny: tuple[SynthCXRSource, Encoders]) -> None:
    """max_epochs [1, 3] gives at 10 % what max_epochs 1 gives there and at 100 % what 3 gives there
    (the cosine schedule spans each fraction's own epochs)."""
    source, encoders = tiny
    common = dict(fractions=[0.1, 1.0], patience=5, schedule="cosine")
    mixed = task(task.Params(max_epochs=[1, 3], **common)).evaluate(encoders, source, CPU)
    short = task(task.Params(max_epochs=1, **common)).evaluate(encoders, source, CPU)
    long = task(task.Params(max_epochs=3, **common)).evaluate(encoders, source, CPU)
    first, second = list(mixed.scores)[0], [c for c in mixed.scores if c.endswith("@100%")][0]
    assert mixed.scores[first] == short.scores[first] and mixed.scores[second] == long.scores[second]
    assert (mixed.details["10%"]["epochs"], mixed.details["100%"]["epochs"]) == (1, 3)
    assert short.scores[second] != long.scores[second]  # the epochs matter at this fraction


def test_head_seeds_of_different_train_seeds_never_meet() -> None:
    """bench_noise's repetitions move train_seed by 1: their heads must not share seeds."""
    seeds = [head_seed(train, j) for train in range(5) for j in range(3)]
    assert len(set(seeds)) == len(seeds) and head_seed(7, 0) == 7


def test_segmentation_with_two_heads_averages_the_two_single_heads(tiny: tuple[SynthCXRSource, Encoders]) -> None:
    source, encoders = tiny
    common = dict(fractions=[0.1, 1.0], max_epochs=2)
    both = Segmentation(Segmentation.Params(heads=[2, 1], **common)).evaluate(encoders, source, CPU)
    first = Segmentation(Segmentation.Params(**common)).evaluate(encoders, source, CPU)
    second = Segmentation(Segmentation.Params(train_seed=head_seed(0, 1), **common)).evaluate(encoders, source, CPU)
    expected = (first.samples["dice@10%"].arrays["values"] + second.samples["dice@10%"].arrays["values"]) / 2
    np.testing.assert_allclose(both.samples["dice@10%"].arrays["values"], expected, atol=1e-6)
    assert both.scores["dice@10%"] == pytest.approx(float(expected.mean()), abs=1e-6)
    terms = [r.samples["pooled_dice@10%"].arrays for r in (first, second)]
    pooled = sum(t["numerator"].sum() for t in terms) / sum(t["denominator"].sum() for t in terms)
    assert both.scores["pooled_dice@10%"] == pytest.approx(pooled)
    assert both.scores["dice@100%"] == first.scores["dice@100%"]  # one head there: the single run's score
    assert both.protocols["dice@10%"]["heads"] == 2 and "heads" not in both.protocols["dice@100%"]
    assert both.protocols["dice@10%"]["head_selection"] == "mean"
    assert both.protocols["dice@10%"]["hash"] != first.protocols["dice@10%"]["hash"]
    assert len(both.details["10%"]["fits"]) == 2 and "fits" not in both.details["100%"]
    assert both.details["10%"]["scored_heads"] == [0, 1]
    for column, value in both.scores.items():
        assert score(both.samples[column].kind, both.samples[column].arrays)[0] == pytest.approx(value, abs=1e-5)
    # restarts: the head with the lower validation loss is the one scored
    best = Segmentation(Segmentation.Params(heads=[2, 1], head_selection="best_val", **common)).evaluate(
        encoders, source, CPU)
    losses = [first.details["10%"]["best_val_loss"], second.details["10%"]["best_val_loss"]]
    winner = (first, second)[losses.index(min(losses))]
    assert losses[0] != losses[1] and best.details["10%"]["scored_heads"] == [losses.index(min(losses))]
    assert best.scores["dice@10%"] == winner.scores["dice@10%"]
    assert best.scores["pooled_dice@10%"] == winner.scores["pooled_dice@10%"]
    assert best.protocols["dice@10%"]["hash"] != both.protocols["dice@10%"]["hash"]


def test_only_the_heads_that_enter_the_score_see_the_test_split(tiny: tuple[SynthCXRSource, Encoders],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """best_val chooses on validation losses: the heads it drops are never run on the test split."""
    source, encoders = tiny
    calls: list[str] = []
    score_test, predict_split = Segmentation._score_test, Detection._predict_split

    def counted(name: str, method):  # the method, recording each call
        return lambda self, *args, **kwargs: calls.append(name) or method(self, *args, **kwargs)

    monkeypatch.setattr(Segmentation, "_score_test", counted("seg", score_test))
    monkeypatch.setattr(Detection, "_predict_split", counted("det", predict_split))
    common = dict(fractions=[1.0], max_epochs=1, heads=3)
    for selection, expected in (("best_val", 1), ("mean", 3)):
        calls.clear()
        Segmentation(Segmentation.Params(head_selection=selection, **common)).evaluate(encoders, source, CPU)
        Detection(Detection.Params(head_selection=selection, **common)).evaluate(encoders, source, CPU)
        assert calls == ["seg"] * expected + ["det"] * expected, selection


def test_detection_with_two_heads_scores_their_pooled_detections(tiny: tuple[SynthCXRSource, Encoders]) -> None:
    source, encoders = tiny
    single = Detection(Detection.Params(fractions=[1.0], max_epochs=2)).evaluate(encoders, source, CPU)
    both = Detection(Detection.Params(fractions=[1.0], max_epochs=2, heads=2)).evaluate(encoders, source, CPU)
    one, two = single.samples["mAP@100%"].arrays, both.samples["mAP@100%"].arrays
    np.testing.assert_array_equal(two["gt_count"], 2 * one["gt_count"])  # each box once per head
    assert two["image"].max() < len(one["gt_count"])  # folded onto the test images
    first_head = two["image"][: len(one["image"])]
    np.testing.assert_array_equal(first_head, one["image"])  # head 0 is the single head (same seed)
    # the board's mAP of the folded rows is torchmetrics' mAP of the two heads on two copies of the test set
    assert score("map", two)[0] == pytest.approx(both.scores["mAP@100%"], abs=1e-4)
    assert both.protocols["mAP@100%"]["heads"] == 2 and len(both.details["100%"]["fits"]) == 2
    best = Detection(Detection.Params(fractions=[1.0], max_epochs=2, heads=2, head_selection="best_val")).evaluate(
        encoders, source, CPU)
    losses = [fit["best_val_loss"] for fit in both.details["100%"]["fits"]]
    assert best.details["100%"]["scored_heads"] == [losses.index(min(losses))]
    alone = Detection(Detection.Params(fractions=[1.0], max_epochs=2, train_seed=head_seed(0, losses.index(min(losses)))))
    assert best.scores["mAP@100%"] == alone.evaluate(encoders, source, CPU).scores["mAP@100%"]
    assert score("map", best.samples["mAP@100%"].arrays)[0] == pytest.approx(best.scores["mAP@100%"], abs=1e-4)
    np.testing.assert_array_equal(best.samples["mAP@100%"].arrays["gt_count"], one["gt_count"])


def test_fold_heads_by_hand() -> None:
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    hit = {"boxes": boxes, "scores": torch.tensor([0.9]), "labels": torch.tensor([0])}
    miss = {"boxes": boxes + 20, "scores": torch.tensor([0.8]), "labels": torch.tensor([0])}
    truth = [{"boxes": boxes, "labels": torch.tensor([0])}, {"boxes": boxes, "labels": torch.tensor([0])}]
    folded = fold_heads(coco_matches([hit, miss, miss, hit], truth + truth, classes=1), images=2)
    np.testing.assert_array_equal(folded["image"], [0, 1, 0, 1])
    np.testing.assert_array_equal(folded["gt_count"], [[2], [2]])
    # two of four boxes found, each at precision 1 then 1 (0.9) and 2/3 … : the 101-point AP of recall 0.5
    assert score("map", folded)[0] == pytest.approx(51 / 101, abs=1e-6)
    only_first = fold_heads(coco_matches([hit, miss], truth, classes=1), images=2)
    np.testing.assert_array_equal(only_first["gt_count"], [[1], [1]])  # one head: unchanged


def test_linear_heads_are_affine_in_the_frozen_maps() -> None:
    """At evaluation the linear probes are affine functions of the maps: f(a + b) = f(a) + f(b) − f(0)."""
    torch.manual_seed(0)
    shapes, channels = [(8, 8), (4, 4)], [6, 10]
    a = [torch.randn(2, c, *s) for c, s in zip(channels, shapes)]
    b = [torch.randn(2, c, *s) for c, s in zip(channels, shapes)]
    zero = [torch.zeros_like(m) for m in a]
    decoder = LinearProbeDecoder(channels, shapes, image_size=32)
    head = LinearFCOSHead(channels, 16, classes=1, box_activation="relu")
    decoder.train()(a), head.train()(a)  # running statistics away from 0/1
    decoder.eval(), head.eval()
    with torch.no_grad():
        added = [x + y for x, y in zip(a, b)]
        assert decoder(a).shape == (2, 1, 32, 32)
        torch.testing.assert_close(decoder(added), decoder(a) + decoder(b) - decoder(zero), atol=1e-4, rtol=1e-4)
        cls, _, ctr, level_shapes = head(a)
        assert level_shapes == [(8, 8), (4, 4), (2, 2)] and cls.shape == (2, 64 + 16 + 4, 1)
        torch.testing.assert_close(head(added)[0], cls + head(b)[0] - head(zero)[0], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(head(added)[2], ctr + head(b)[2] - head(zero)[2], atol=1e-4, rtol=1e-4)


def test_output_prior_starts_the_decoder_at_the_prior(tiny: tuple[SynthCXRSource, Encoders]) -> None:
    from vlpbench.tasks.decoders import build_decoder, initialise_output_prior

    torch.manual_seed(0)
    decoder = build_decoder("unet", [6, 10], [(8, 8), (4, 4)], image_size=32, channels=8)
    initialise_output_prior(decoder, 0.01)
    last = [m for m in decoder.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    assert last.out_channels == 1
    torch.testing.assert_close(torch.sigmoid(last.bias), torch.tensor([0.01]))
    # a recorded option: absent by default (runs keep their identity), in the protocol when set
    assert "output_prior" not in Segmentation.Params().model_dump()
    source, encoders = tiny
    result = Segmentation(Segmentation.Params(fractions=[1.0], max_epochs=1, output_prior=0.05)).evaluate(
        encoders, source, CPU)
    plain = Segmentation(Segmentation.Params(fractions=[1.0], max_epochs=1)).evaluate(encoders, source, CPU)
    assert result.protocols["dice@100%"]["output_prior"] == 0.05
    assert result.protocols["dice@100%"]["hash"] != plain.protocols["dice@100%"]["hash"]
    with pytest.raises(ValidationError):
        Segmentation.Params(output_prior=1.0)
