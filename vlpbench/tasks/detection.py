"""Detection with a frozen encoder: an FCOS-style multi-scale head, mAP over IoU 0.40–0.75.

The frozen feature maps (CNN: every stage from stride 4 to the patch stage; ViT: its token map)
feed a small feature pyramid (1×1 laterals, top-down sums, plus one extra coarser level made by
stride-2 convolution so that even one ViT map gives two scales). A head shared across levels
predicts per location class logits, box distances (l, t, r, b; scaled by the level's stride) and
centerness. Training targets are FCOS's: a location is positive for the smallest ground-truth box
that contains it and whose size falls in the level's range; losses are torchvision's sigmoid focal
loss (classes), GIoU loss (boxes, weighted by centerness) and BCE (centerness). Inference keeps
the top-scoring boxes per image and applies torchvision's batched NMS. The score is torchmetrics'
mean average precision averaged over IoU thresholds 0.40, 0.45, …, 0.75, as MGCA does.

Label fractions 1 % / 10 % / 100 % (nested, recorded seed, each keeping an image with a box);
early stopping on the validation loss; the test split scored once. With ``heads: k`` a fraction
trains k heads from different seeds and scores their detections pooled (``head_selection: mean``;
each test image's boxes counted once per head: the mAP of k copies of the test set, one per head),
or the detections of the head with the lowest validation loss (``best_val``). By default every local
finding's box is one class ("lesion", as RSNA's single opacity class); ``classes: findings``
keeps one class per finding.
"""

from __future__ import annotations

import functools
import importlib.util
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor
from torchvision.ops import batched_nms, box_iou, generalized_box_iou_loss, sigmoid_focal_loss

from vlpbench.core.component import Component
from vlpbench.core.capabilities import declared
from vlpbench.engine.progress import report
from vlpbench.tasks.base import (Column, Encoders, Samples, TaskResult, fraction_label, scored_cases,
                                 test_cases_field, with_hash)
from vlpbench.tasks.detection_heads import HEADS, FCOSHead, LinearFCOSHead  # noqa: F401  (re-exported)
from vlpbench.tasks.dense import (DenseTaskParams, fit_details, fit_head, head_seed, heads_protocol,
                                  positives_first_fractions, scored_heads, split_feature_maps)

IOU_THRESHOLDS = [round(0.40 + 0.05 * i, 2) for i in range(8)]  # 0.40 … 0.75


@functools.cache
def coco_backend() -> str:
    """The COCO evaluator behind torchmetrics' ``MeanAveragePrecision``: ``faster_coco_eval`` (a
    dependency) where it imports, else ``pycocotools``. Both give the same numbers in every field
    (``tests/test_detection_matches.py``); the faster one takes about a quarter of the time, which is
    a few seconds of every run's detection task."""
    return "faster_coco_eval" if importlib.util.find_spec("faster_coco_eval") is not None else "pycocotools"


def locations(shapes: list[tuple[int, int]], image_size: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Centres (x, y) in pixels [L,2] and the stride of each location [L]."""
    points, strides = [], []
    for h, w in shapes:
        stride = image_size / w
        ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
        points.append(torch.stack([(xs.flatten() + 0.5) * stride, (ys.flatten() + 0.5) * stride], 1))
        strides.append(torch.full((h * w,), stride, device=device))
    return torch.cat(points), torch.cat(strides)


def fcos_targets(points: Tensor, strides: Tensor, boxes: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
    """Matched box index per location [B,L] (−1: background) and ltrb targets [B,L,4], vectorised.

    A location matches the smallest valid box that contains it and whose largest side distance
    lies in the level's range (0, 8·stride], (the last level: no upper bound).
    """
    x, y = points[:, 0].view(1, -1, 1), points[:, 1].view(1, -1, 1)
    x0, y0, x1, y1 = (boxes[..., i].unsqueeze(1) for i in range(4))  # [B,1,G]
    ltrb = torch.stack([x - x0, y - y0, x1 - x, y1 - y], -1)  # [B,L,G,4]
    inside = ltrb.amin(-1) > 0
    reach = ltrb.amax(-1)
    upper = torch.where(strides >= strides.max(), torch.full_like(strides, float("inf")), 8 * strides).view(1, -1, 1)
    lower = torch.where(strides <= strides.min(), torch.zeros_like(strides), 4 * strides).view(1, -1, 1)
    fits = inside & (reach > lower) & (reach <= upper) & valid.unsqueeze(1)
    area = ((x1 - x0) * (y1 - y0)).expand_as(fits)
    area = torch.where(fits, area, torch.full_like(area, float("inf")))
    best = area.argmin(-1)  # [B,L]
    matched = torch.where(fits.any(-1), best, torch.full_like(best, -1))
    target = ltrb.gather(2, best.clamp_min(0).unsqueeze(-1).unsqueeze(-1).expand(-1, -1, 1, 4)).squeeze(2)
    return matched, target


def centerness_target(ltrb: Tensor) -> Tensor:
    lr, tb = ltrb[..., [0, 2]], ltrb[..., [1, 3]]
    return torch.sqrt((lr.amin(-1) / lr.amax(-1).clamp_min(1e-6)) * (tb.amin(-1) / tb.amax(-1).clamp_min(1e-6)))


def ltrb_to_boxes(points: Tensor, ltrb: Tensor) -> Tensor:
    return torch.stack([points[..., 0] - ltrb[..., 0], points[..., 1] - ltrb[..., 1],
                        points[..., 0] + ltrb[..., 2], points[..., 1] + ltrb[..., 3]], -1)


def coco_matches(predictions: list[dict[str, Tensor]], truth: list[dict[str, Tensor]], classes: int,
                 thresholds: list[float] = IOU_THRESHOLDS) -> dict[str, np.ndarray]:
    """Per-detection matches as COCO's evaluation decides them, for :class:`~vlpbench.tasks.base.Samples`
    of kind ``map``: within an image and class, detections by decreasing score each take the
    unmatched ground-truth box of highest IoU ≥ the threshold. COCO decides this per image, so the
    leaderboard can recompute mAP on any resample of test images from these rows alone."""
    image, label, score, matched = [], [], [], []
    gt_count = np.zeros((len(truth), classes), dtype=np.int32)
    for i, (pred, true) in enumerate(zip(predictions, truth)):
        for c in range(classes):
            gt = true["boxes"][true["labels"] == c].float()
            gt_count[i, c] = len(gt)
            mine = pred["labels"] == c
            boxes, values = pred["boxes"][mine].float(), pred["scores"][mine].float()
            order = np.argsort(-values.numpy(), kind="mergesort")
            boxes, values = boxes[order], values[order]
            iou = box_iou(boxes, gt).numpy() if len(gt) and len(boxes) else np.zeros((len(boxes), len(gt)))
            hits = greedy_matches(iou, thresholds)
            image += [i] * len(boxes)
            label += [c] * len(boxes)
            score += values.tolist()
            matched.append(hits)
    return {"image": np.asarray(image, dtype=np.int32), "label": np.asarray(label, dtype=np.int16),
            "score": np.asarray(score, dtype=np.float32),
            "matched": np.concatenate(matched) if matched else np.zeros((0, len(thresholds)), dtype=bool),
            "gt_count": gt_count}


def greedy_matches(iou: np.ndarray, thresholds: list[float]) -> np.ndarray:
    """COCO's greedy matching of one image and class, every IoU threshold at once: detections (rows
    of ``iou`` [D, G], by decreasing score) each take the unmatched ground-truth box of highest IoU ≥
    the threshold (the last such box on ties, as COCO's loop). Only detections that overlap some box
    at the lowest threshold are visited. Returns hits [D, T]."""
    hits = np.zeros((iou.shape[0], len(thresholds)), dtype=bool)
    if not iou.size:
        return hits
    bounds = np.minimum(np.asarray(thresholds, dtype=float), 1 - 1e-10)[:, None]  # [T, 1]
    taken = np.zeros((len(thresholds), iou.shape[1]), dtype=bool)  # [T, G]
    for d in np.flatnonzero((iou >= bounds.min()).any(1)):
        allowed = (iou[d][None, :] >= bounds) & ~taken  # [T, G]
        found = allowed.any(1)
        if not found.any():
            continue
        masked = np.where(allowed, iou[d][None, :], -1.0)[:, ::-1]
        chosen = iou.shape[1] - 1 - masked.argmax(1)  # the last box of highest IoU
        rows = np.flatnonzero(found)
        taken[rows, chosen[rows]] = True
        hits[d, rows] = True
    return hits


class Detection(Component["Detection.Params"]):
    requires = frozenset({"data:boxes", "image:patches"})
    metric_version = "1"

    class Params(DenseTaskParams):
        classes: Literal["single", "findings"] = "single"
        channels: int = Field(32, ge=8)
        score_threshold: float = Field(0.05, ge=0, lt=1)
        nms_iou: float = Field(0.6, gt=0, le=1)
        max_detections: int = Field(20, ge=1)
        head: Literal["fcos", "linear"] = Field(
            "fcos", exclude_if=lambda value: value == "fcos",  # runs from before the option keep their identity
            description="fcos: a feature pyramid and FCOS's conv towers; linear: 1×1 convolutions on the "
                        "standardised frozen maps (LinearFCOSHead)")
        box_activation: Literal["softplus", "relu"] = Field(
            "softplus", description="softplus (a gradient at every location) or relu (FCOS's and torchvision's: a "
                                    "location whose box output turns negative stops learning; see FCOSHead)")
        test_cases: int | None = test_cases_field()

    # -- data ------------------------------------------------------------------------------------
    def _targets(self, split: Any, findings: list[str], label_names: tuple[str, ...]) -> tuple[Tensor, Tensor, Tensor]:
        """Padded boxes [n,G,4], class ids [n,G] and validity [n,G] of a split."""
        wanted = [label_names.index(f) for f in findings]
        rows = split.boxes[np.isin(split.boxes[:, 1], wanted)]
        n = len(split)
        counts = np.bincount(rows[:, 0].astype(int), minlength=n)
        width = max(1, int(counts.max()) if len(counts) else 1)
        boxes, classes, valid = torch.zeros(n, width, 4), torch.zeros(n, width, dtype=torch.long), torch.zeros(n, width, dtype=torch.bool)
        order = np.argsort(rows[:, 0], kind="stable")
        rows = rows[order]
        slot = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
        sample = rows[:, 0].astype(int)
        boxes[sample, slot] = torch.from_numpy(rows[:, 2:6]).float()
        class_of = {finding_index: i for i, finding_index in enumerate(wanted)}
        ids = [0 if self.params.classes == "single" else class_of[int(f)] for f in rows[:, 1]]
        classes[sample, slot] = torch.tensor(ids, dtype=torch.long)
        valid[sample, slot] = True
        return boxes, classes, valid

    # -- loss and inference ----------------------------------------------------------------------
    def loss(self, head: FCOSHead, maps: list[Tensor], boxes: Tensor, classes: Tensor, valid: Tensor,
             image_size: int) -> Tensor:
        logits, ltrb, ctr, shapes = head(maps)
        points, strides = locations(shapes, image_size, logits.device)
        matched, target = fcos_targets(points, strides, boxes, valid)
        positive = matched >= 0
        num_positive = max(1.0, float(positive.sum()))
        cls_target = torch.zeros_like(logits)
        label = classes.gather(1, matched.clamp_min(0))
        cls_target[positive, label[positive]] = 1.0
        cls_loss = sigmoid_focal_loss(logits, cls_target, reduction="sum") / num_positive
        if not positive.any():
            return cls_loss + 0.0 * (ltrb.sum() + ctr.sum())
        scale = strides.view(1, -1, 1).expand_as(ltrb)
        predicted = ltrb_to_boxes(points.expand(ltrb.shape[0], -1, -1), ltrb * scale)[positive]
        truth = ltrb_to_boxes(points.expand(ltrb.shape[0], -1, -1), target)[positive]
        centre = centerness_target(target[positive])
        box_loss = (generalized_box_iou_loss(predicted, truth, reduction="none") * centre).sum() / centre.sum().clamp_min(1e-6)
        ctr_loss = F.binary_cross_entropy_with_logits(ctr[positive], centre)
        return cls_loss + box_loss + ctr_loss

    @torch.no_grad()
    def predict(self, head: FCOSHead, maps: list[Tensor], image_size: int) -> list[dict[str, Tensor]]:
        p = self.params
        logits, ltrb, ctr, shapes = head(maps)
        points, strides = locations(shapes, image_size, logits.device)
        scores = torch.sqrt(torch.sigmoid(logits) * torch.sigmoid(ctr).unsqueeze(-1))  # [B,L,K]
        boxes = ltrb_to_boxes(points.expand(ltrb.shape[0], -1, -1), ltrb * strides.view(1, -1, 1)).clamp(0, image_size)
        batch, _, classes = scores.shape
        values, top = scores.flatten(1).topk(min(100, scores[0].numel()), dim=1)  # [B,T] per image
        where, label = top // classes, top % classes
        image = torch.arange(batch, device=scores.device).unsqueeze(1).expand_as(top)
        keep = values > p.score_threshold
        image, where, label, values = image[keep], where[keep], label[keep], values[keep]
        candidates = boxes[image, where]
        # one NMS call for the whole batch: boxes only suppress boxes of the same image and class
        chosen = batched_nms(candidates, values, image * classes + label, p.nms_iou)  # by decreasing score
        chosen = chosen[torch.argsort(image[chosen], stable=True)]  # grouped by image, score order kept
        counts = torch.bincount(image[chosen], minlength=batch)
        starts = torch.cumsum(counts, 0) - counts
        rank = torch.arange(len(chosen), device=chosen.device) - starts[image[chosen]]
        chosen = chosen[rank < p.max_detections]
        per_image = torch.bincount(image[chosen], minlength=batch).tolist()
        return [{"boxes": b.cpu(), "scores": s.cpu(), "labels": c.cpu()} for b, s, c in
                zip(candidates[chosen].split(per_image), values[chosen].split(per_image), label[chosen].split(per_image))]

    # -- the task --------------------------------------------------------------------------------
    def evaluate(self, encoders: Encoders, source: Any, device: torch.device) -> TaskResult:
        from torchmetrics.detection import MeanAveragePrecision

        p = self.params
        findings = p.findings or list(declared(source, "local_findings"))
        label_names = tuple(source.label_names)
        splits = {name: source.split(name) for name in ("train", "val", "test")}
        maps = split_feature_maps(encoders, splits, device, p.min_stride)
        targets = {name: self._targets(s, findings, label_names) for name, s in splits.items()}
        tested = scored_cases("detection", splits["test"].images, p.test_cases)
        targets["test"] = tuple(t[:tested] for t in targets["test"])
        image_size = splits["train"].images.shape[-1]
        classes = 1 if p.classes == "single" else len(findings)
        has_box = targets["train"][2].any(1).numpy()
        subsets = positives_first_fractions(has_box, p.fractions, p.sampling_seed)
        scores, protocols, details, columns, samples = {}, {}, {}, {}, {}
        for done, (fraction, subset) in enumerate(subsets.items()):
            report(f"fraction {fraction_label(fraction)}", done, len(subsets))
            metric = MeanAveragePrecision(box_format="xyxy", iou_thresholds=IOU_THRESHOLDS, backend=coco_backend())
            truth = self._truth(targets["test"])
            trained = [self._train(maps, targets, subset, fraction, classes, image_size, device,
                                   head_seed(p.train_seed, j))
                       for j in range(p.heads_at(fraction))]
            fits = [fit for _, fit in trained]
            scored = scored_heads(p, fits)  # chosen on validation losses before any head sees the test split
            all_predictions, all_truth = [], []
            for j in scored:  # each scored head's predictions on the whole test set
                predictions = self._predict_split(trained[j][0], maps["test"], image_size, device, tested)
                metric.update(predictions, truth)
                all_predictions += predictions
                all_truth += truth
            result = metric.compute()
            label = fraction_label(fraction)
            scores[f"mAP@{label}"] = float(result["map"])
            columns[f"mAP@{label}"] = Column(headline=True, description="COCO mAP over IoU 0.40:0.05:0.75")
            samples[f"mAP@{label}"] = Samples("map", fold_heads(coco_matches(all_predictions, all_truth, classes),
                                                                 len(truth)))
            details[label] = fit_details(int(len(subset)), fits, scored)
            protocols[f"mAP@{label}"] = with_hash({
                "task": "detection", "dataset": source.protocol(), "target": sorted(findings), "classes": p.classes,
                "box_activation": p.box_activation, **({"head": p.head} if p.head != "fcos" else {}),
                "train_split": "train", "model_selection": "val", "test_split": "test", "fraction": fraction,
                "sampling_seed": p.sampling_seed, "train_images": int(len(subset)),
                **({"test_cases": tested} if p.test_cases is not None else {}),
                **heads_protocol(p, fraction),
                "metric": "torchmetrics MeanAveragePrecision (COCO-style), mean over IoU 0.40:0.05:0.75",
            })
        return TaskResult(scores, protocols, details, columns, samples)

    def _train(self, maps: dict[str, Any], targets: dict[str, tuple[Tensor, Tensor, Tensor]], subset: np.ndarray,
               fraction: float, classes: int, image_size: int, device: torch.device,
               seed: int) -> tuple[torch.nn.Module, dict[str, float]]:
        """One head trained on ``subset`` (the label fraction ``fraction``) of the training split from
        ``seed`` (initialisation and order), selected on the validation loss, and its fit. It predicts
        on the test split afterwards (:meth:`_predict_split`), only if it enters the score."""
        p = self.params
        torch.manual_seed(seed)
        head = HEADS[p.head](maps["train"].channels, p.channels, classes, p.box_activation).to(device)
        subset_t = torch.from_numpy(subset)

        def batch_loss(split: str, rows: Tensor) -> Tensor:
            boxes, labels, valid = (t[rows].to(device) for t in targets[split])
            return self.loss(head, maps[split].batch(rows, device), boxes, labels, valid, image_size)

        def val_loss() -> float:
            total = 0.0
            for start in range(0, len(maps["val"]), 128):
                rows = torch.arange(start, min(start + 128, len(maps["val"])))
                total += float(batch_loss("val", rows)) * len(rows)
            return total / len(maps["val"])

        fit = fit_head(p, head, len(subset), lambda index: batch_loss("train", subset_t[index]), val_loss, fraction,
                       seed=seed)
        return head, fit

    def _predict_split(self, head: torch.nn.Module, maps: Any, image_size: int, device: torch.device,
                       images: int | None = None) -> list[dict[str, Tensor]]:
        """The head's detections on every image of a split (or its first ``images``), 128 at a time."""
        predictions: list[dict[str, Tensor]] = []
        count = len(maps) if images is None else images
        for start in range(0, count, 128):
            predictions += self.predict(head, maps.batch(torch.arange(start, min(start + 128, count)), device),
                                        image_size)
        return predictions

    @staticmethod
    def _truth(targets: tuple[Tensor, Tensor, Tensor]) -> list[dict[str, Tensor]]:
        """The ground truth of each image of a split, as torchmetrics takes it."""
        boxes, labels, valid = targets
        return [{"boxes": boxes[i][valid[i]], "labels": labels[i][valid[i]]} for i in range(len(boxes))]


def fold_heads(matches: dict[str, np.ndarray], images: int) -> dict[str, np.ndarray]:
    """:func:`coco_matches` of k heads' detections on k copies of a test set of ``images`` images
    (head after head) folded onto the test images: each detection keeps its image, each image counts
    its ground truth once per head. The mAP of the folded rows is then the mAP of the k heads' pooled
    detections (what torchmetrics computes when it is given the k copies), and a resample of test
    images takes every head's detections on them."""
    copies = len(matches["gt_count"]) // max(1, images)
    if copies <= 1:
        return matches
    return {**matches, "image": (matches["image"] % images).astype(np.int32),
            "gt_count": matches["gt_count"].reshape(copies, images, -1).sum(0).astype(np.int32)}

