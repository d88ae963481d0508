"""Segmentation and detection: metrics and targets by hand, and both tasks end to end, tiny."""

from __future__ import annotations

import pytest
import torch

from vlpbench.core.context import BuildContext
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
    assert det.protocols["mAP@100%"]["box_activation"] == "softplus"  # a protocol of its own
    from vlpbench.board.resample import score

    for result in (seg, det):  # the per-case samples give back every score (the board resamples them)
        for column, value in result.scores.items():
            sample = result.samples[column]
            assert score(sample.kind, sample.arrays)[0] == pytest.approx(value, abs=1e-4), column
    assert seg.columns["dice@10%"].headline and not seg.columns["pooled_dice@10%"].headline


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


def _batches_seen(train_size: int, max_steps: int | None, epochs: int = 4) -> list[list[list[int]]]:
    """The index batches fit_with_early_stopping trains on, per epoch (validation never improves
    after the first epoch, so patience is set high enough to run every epoch)."""
    from vlpbench.tasks.dense import fit_with_early_stopping

    model = torch.nn.Linear(1, 1)
    seen: list[list[list[int]]] = []

    def train_loss(index: torch.Tensor) -> torch.Tensor:
        seen[-1].append(index.tolist())
        return model.weight.sum() * 0.0 + model.bias.sum() * 0.0

    def val_loss() -> float:
        seen.append([])
        return 1.0

    seen.append([])
    fit_with_early_stopping(model, train_size, train_loss, val_loss, lr=1e-3, weight_decay=0.0, batch_size=4,
                            max_epochs=epochs, patience=epochs, seed=0, min_steps_per_epoch=2,
                            max_steps_per_epoch=max_steps)
    return [e for e in seen if e]


def test_capped_epochs_continue_one_shuffled_stream() -> None:
    capped = _batches_seen(train_size=40, max_steps=3)
    assert [len(epoch) for epoch in capped] == [3, 3, 3, 3]  # 10 steps of a full pass, capped at 3
    flat = [i for epoch in capped for batch in epoch for i in batch]
    assert sorted(flat[:40]) == list(range(40))  # the first 40 indices are one permutation, spread over epochs
    uncapped = _batches_seen(train_size=40, max_steps=None)
    assert [len(epoch) for epoch in uncapped] == [10] * 4
    assert flat == [i for epoch in uncapped for batch in epoch for i in batch][:len(flat)]


def test_a_cap_above_the_epoch_length_changes_nothing() -> None:
    assert _batches_seen(train_size=6, max_steps=50) == _batches_seen(train_size=6, max_steps=None)


def test_tasks_share_frozen_features_within_one_evaluation(tiny_source: SynthCXRSource) -> None:
    torch.manual_seed(0)
    encoder = TimmImageEncoder(TimmImageEncoder.Params(arch="resnet18"), BuildContext(embed_dim=16, image_size=32))
    calls = []
    original = encoder.feature_maps
    encoder.feature_maps = lambda images, min_stride=4: calls.append(len(images)) or original(images, min_stride)
    cpu, encoders = torch.device("cpu"), Encoders(encoder)
    seg = Segmentation(Segmentation.Params(fractions=[1.0], max_epochs=1)).evaluate(encoders, tiny_source, cpu)
    Detection(Detection.Params(fractions=[1.0], max_epochs=1)).evaluate(encoders, tiny_source, cpu)
    assert sum(calls) == 48 + 16 + 24  # train, val and test extracted once, for both tasks
    Detection(Detection.Params(fractions=[1.0], max_epochs=1, min_stride=8)).evaluate(encoders, tiny_source, cpu)
    assert sum(calls) == 48 + 16 + 24  # a coarser stride: the coarser levels of the same maps
    Detection(Detection.Params(fractions=[1.0], max_epochs=1, min_stride=2)).evaluate(encoders, tiny_source, cpu)
    assert sum(calls) == 2 * (48 + 16 + 24)  # a finer one: other features
    again = Segmentation(Segmentation.Params(fractions=[1.0], max_epochs=1)).evaluate(Encoders(encoder), tiny_source, cpu)
    assert again.scores == seg.scores  # the shared maps are the ones a fresh evaluation computes


def test_cosine_schedule_decays_the_learning_rate_to_zero_over_every_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """The learning rate of each optimiser step under ``schedule="cosine"``: lr·½(1 + cos(π·t/T)) for
    step t of T = steps per epoch × max_epochs, by hand; constant without a schedule."""
    import math

    from vlpbench.tasks.dense import fit_with_early_stopping

    def rates(schedule: str) -> list[float]:
        model = torch.nn.Linear(1, 1)
        seen: list[float] = []
        original_step = torch.optim.AdamW.step

        def recording_step(self: torch.optim.Optimizer, *args, **kwargs):  # noqa: ANN001, ANN202
            seen.append(self.param_groups[0]["lr"])
            return original_step(self, *args, **kwargs)

        with monkeypatch.context() as patch:
            patch.setattr(torch.optim.AdamW, "step", recording_step)
            fit_with_early_stopping(model, 10, lambda index: model.bias.sum() * 0.0 + model.weight.sum() * 0.0,
                                    lambda: 1.0, lr=0.2, weight_decay=0.0, batch_size=4, max_epochs=3, patience=3,
                                    seed=0, schedule=schedule)
        return seen

    total = 3 * 3  # ceil(10 / 4) = 3 steps per epoch, 3 epochs
    expected = [0.2 * 0.5 * (1 + math.cos(math.pi * t / total)) for t in range(total)]
    assert rates("cosine") == pytest.approx(expected, abs=1e-12)
    assert rates("constant") == [0.2] * total


def test_an_unknown_schedule_is_refused() -> None:
    from vlpbench.tasks.dense import learning_rate_schedule

    optimizer = torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=0.1)
    with pytest.raises(ValueError, match="cosine"):
        learning_rate_schedule(optimizer, "linear", 10)


def test_the_default_schedule_stays_out_of_the_recorded_parameters() -> None:
    """Runs that do not set ``schedule`` keep the identity they had before the option existed; a
    cosine schedule is recorded (and so changes the identity)."""
    assert "schedule" not in Segmentation.Params().model_dump()
    assert Detection.Params(schedule="cosine").model_dump()["schedule"] == "cosine"


def _train_one_weight(gradients: list[float], grad_clip: float | None) -> float:
    """Train w (starting at 0) with AdamW on the loss w·g_t, g_t = gradients[t]; return w at the end."""
    from vlpbench.tasks.dense import fit_with_early_stopping

    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    step, calls = [0], [0]

    def train_loss(index: torch.Tensor) -> torch.Tensor:
        g = gradients[step[0]]
        step[0] += 1
        return model.weight.sum() * g

    def val_loss() -> float:  # always improving: the last state is kept
        calls[0] += 1
        return -float(calls[0])

    fit_with_early_stopping(model, train_size=1, train_loss=train_loss, val_loss=val_loss, lr=0.1, weight_decay=0.0,
                            batch_size=1, max_epochs=len(gradients), patience=1, seed=0, grad_clip=grad_clip)
    assert step[0] == len(gradients)
    return model.weight.detach().item()


def test_grad_clip_bounds_a_spike_and_leaves_small_gradients_alone() -> None:
    """A gradient spike (1e6 at step 5 among 0.5s) clipped to norm 1 trains exactly like a gradient of 1
    there; unclipped, the spike drags AdamW's moments and the weight ends elsewhere."""
    spiky = [0.5] * 5 + [1e6] + [0.5] * 6
    tame = [0.5] * 5 + [1.0] + [0.5] * 6
    clipped, reference = _train_one_weight(spiky, 1.0), _train_one_weight(tame, None)
    assert clipped == pytest.approx(reference, abs=1e-5)
    assert abs(_train_one_weight(spiky, None) - reference) > 0.05
    # below the clip nothing changes
    assert _train_one_weight([0.5] * 8, 1.0) == _train_one_weight([0.5] * 8, None)


def test_grad_clip_enters_the_identity_only_when_set() -> None:
    from vlpbench.tasks.segmentation import Segmentation

    assert "grad_clip" not in Segmentation.Params().model_dump()
    assert Segmentation.Params(grad_clip=1.0).model_dump()["grad_clip"] == 1.0
    with pytest.raises(ValueError):
        Segmentation.Params(grad_clip=0)
