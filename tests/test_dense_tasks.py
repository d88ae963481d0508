"""Segmentation and detection: metrics and targets by hand, and both tasks end to end, tiny."""

from __future__ import annotations

import pytest
import torch

from vlpbench.context import BuildContext
from vlpbench.data.synthcxr_source import SynthCXRSource
from vlpbench.models.image_timm import TimmImageEncoder
from vlpbench.tasks.base import Encoders
from vlpbench.tasks.detection import IOU_THRESHOLDS, Detection, centerness_target, fcos_targets, locations
from vlpbench.tasks.segmentation import Segmentation, dice_scores


def masks(*rows: list[list[int]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.bool).unsqueeze(1)


def test_dice_per_image_and_pooled_by_hand() -> None:
    truth = masks([[1, 1], [0, 0]], [[0, 0], [0, 0]], [[1, 0], [0, 0]])
    perfect, pooled = dice_scores(truth.clone(), truth)
    assert perfect.tolist() == [1.0, 1.0, 1.0] and pooled == 1.0  # empty mask + empty prediction = 1
    inverted, pooled = dice_scores(~truth, truth)
    assert inverted.tolist() == [0.0, 0.0, 0.0] and pooled == 0.0
    partial = masks([[1, 0], [0, 0]], [[0, 1], [0, 0]], [[1, 1], [0, 0]])
    per_image, pooled = dice_scores(partial, truth)
    # image 1: 2·1/(1+2); image 2: prediction on an empty mask → 0; image 3: 2·1/(2+1)
    assert per_image.tolist() == pytest.approx([2 / 3, 0.0, 2 / 3])
    assert pooled == pytest.approx(2 * 2 / (4 + 3))  # 2ΣTP / (Σpred + Σtrue) over every pixel


def test_fcos_targets_and_centerness_by_hand() -> None:
    points, strides = locations([(8, 8), (4, 4)], 32, torch.device("cpu"))
    assert points[0].tolist() == [2.0, 2.0] and strides.tolist()[:1] + strides.tolist()[-1:] == [4.0, 8.0]
    boxes = torch.tensor([[[8.0, 8.0, 24.0, 24.0], [0.0, 0.0, 0.0, 0.0]]])
    valid = torch.tensor([[True, False]])
    matched, target = fcos_targets(points, strides, boxes, valid)
    location = 2 * 8 + 2  # level 0, row 2, column 2: centre (10, 10)
    assert matched[0, location].item() == 0 and target[0, location].tolist() == [2.0, 2.0, 14.0, 14.0]
    assert matched[0, 0].item() == -1  # (2, 2) lies outside the box
    assert centerness_target(target[0, location]).item() == pytest.approx(2 / 14)


def test_map_of_perfect_and_missing_predictions() -> None:
    from torchmetrics.detection import MeanAveragePrecision

    truth = [{"boxes": torch.tensor([[4.0, 4.0, 20.0, 20.0]]), "labels": torch.tensor([0])}]
    perfect = [{"boxes": truth[0]["boxes"], "scores": torch.tensor([0.9]), "labels": torch.tensor([0])}]
    metric = MeanAveragePrecision(box_format="xyxy", iou_thresholds=IOU_THRESHOLDS)
    metric.update(perfect, truth)
    assert float(metric.compute()["map"]) == pytest.approx(1.0)
    shifted = [{"boxes": torch.tensor([[8.0, 4.0, 24.0, 20.0]]), "scores": torch.tensor([0.9]), "labels": torch.tensor([0])}]
    metric = MeanAveragePrecision(box_format="xyxy", iou_thresholds=IOU_THRESHOLDS)
    metric.update(shifted, truth)  # IoU 12·16/(2·256 − 192) = 0.6: a hit at 0.40…0.60, a miss above
    assert float(metric.compute()["map"]) == pytest.approx(5 / 8, abs=1e-3)


@pytest.fixture(scope="module")
def tiny_source() -> SynthCXRSource:
    return SynthCXRSource(SynthCXRSource.Params(image_size=32, pretrain_size=16, train_size=48, val_size=16,
                                                test_size=24), None)


@pytest.mark.parametrize("arch", ["resnet18", "vit_tiny_patch16_224"])
def test_segmentation_and_detection_end_to_end(arch: str, tiny_source: SynthCXRSource) -> None:
    torch.manual_seed(0)
    encoder = TimmImageEncoder(TimmImageEncoder.Params(arch=arch), BuildContext(embed_dim=16, image_size=32))
    cpu = torch.device("cpu")
    seg = Segmentation(Segmentation.Params(fractions=[0.1, 1.0], max_epochs=2)).evaluate(Encoders(encoder), tiny_source, cpu)
    assert set(seg.scores) == {"dice@10%", "pooled_dice@10%", "dice@100%", "pooled_dice@100%"}
    assert all(0.0 <= v <= 1.0 for v in seg.scores.values())
    assert seg.protocols["dice@10%"]["sampling_seed"] == 42 and seg.details["10%"]["train_images"] >= 5
    det = Detection(Detection.Params(fractions=[1.0], max_epochs=2)).evaluate(Encoders(encoder), tiny_source, cpu)
    assert set(det.scores) == {"mAP@100%"} and 0.0 <= det.scores["mAP@100%"] <= 1.0


@pytest.mark.parametrize("arch", ["resnet18", "vit_tiny_patch16_224"])
def test_global_tasks_with_both_encoder_families(arch: str, tiny_source: SynthCXRSource) -> None:
    from vlpbench.models.text_bert import BertTextEncoder
    from vlpbench.tasks.linear_probe import LinearProbe
    from vlpbench.tasks.retrieval import Retrieval
    from vlpbench.tasks.zero_shot import ZeroShot

    torch.manual_seed(0)
    context = BuildContext(embed_dim=16, image_size=32, corpus=tiny_source.split("pretrain").reports)
    encoders = Encoders(TimmImageEncoder(TimmImageEncoder.Params(arch=arch), context),
                        BertTextEncoder(BertTextEncoder.Params(layers=1, hidden=32, heads=2), context))
    cpu = torch.device("cpu")
    probe = LinearProbe(LinearProbe.Params(fractions=[1.0], max_epochs=3)).evaluate(encoders, tiny_source, cpu)
    zero_shot = ZeroShot(ZeroShot.Params()).evaluate(encoders, tiny_source, cpu)
    retrieval = Retrieval(Retrieval.Params()).evaluate(encoders, tiny_source, cpu)
    for scores in (probe.scores, zero_shot.scores, retrieval.scores):
        assert scores and all(0.0 <= v <= 1.0 for v in scores.values() if v == v)
