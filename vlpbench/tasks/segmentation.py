"""Segmentation with a frozen encoder (MGCA's protocol, with the whole-test-set Dice).

A decoder (U-Net for CNN feature pyramids, progressive upsampling for ViT tokens; MONAI blocks)
trains on frozen feature maps with ``loss = 10·focal − log(soft Dice)`` at label fractions
1 % / 10 % / 100 % of the training split (nested, drawn with a recorded seed, each keeping an image
with a mask), early stopping on the validation loss; with ``heads: k`` a fraction trains k decoders
from different seeds, and its scores average theirs (``head_selection: mean``; the downstream noise
shrinks by about √k) or are those of the one with the lowest validation loss (``best_val``).
The test split is scored once: Dice at
threshold 0.5 per image (MONAI ``compute_dice``; an empty mask with an empty prediction scores 1,
as in MGCA), averaged over every test image — never per batch — and, beside it, the pixel-pooled
Dice ``2ΣTP / (Σpred + Σtrue)`` over the whole test set.

The target is the union of the dataset's masks of ``findings`` (default: every local finding).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from monai.losses import FocalLoss
from monai.metrics import compute_dice
from pydantic import Field

from vlpbench.core.capabilities import declared
from vlpbench.core.component import Component
from vlpbench.engine.progress import report
from vlpbench.tasks.base import Column, Encoders, Samples, TaskResult, fraction_label, with_hash
from vlpbench.tasks.decoders import build_decoder, initialise_output_prior
from vlpbench.tasks.dense import (DenseTaskParams, MaskRows, fit_details, fit_head, head_seed,
                                  heads_protocol, scored_heads,
                                  positives_first_fractions, split_feature_maps)


def soft_dice(logits: torch.Tensor, target: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    probability = torch.sigmoid(logits)
    return (2 * (probability * target).sum() + eps) / (probability.sum() + target.sum() + eps)


def dice_scores(prediction: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Per-image Dice [n] (empty + empty = 1) and the pixel-pooled Dice of binary masks [n,1,H,W]."""
    per_image = compute_dice(prediction.float(), target.float(), include_background=True, ignore_empty=False)[:, 0]
    overlap = float((prediction & target).sum())
    pooled = 2 * overlap / max(1.0, float(prediction.sum() + target.sum()))
    return per_image, pooled


class Segmentation(Component["Segmentation.Params"]):
    requires = frozenset({"data:masks", "image:patches"})
    metric_version = "1"

    class Params(DenseTaskParams):
        decoder: Literal["auto", "unet", "pup", "linear"] = "auto"
        channels: int = Field(32, ge=4)
        output_stride: int = Field(4, ge=1, description="decoder resolution before the bilinear upsampling of its logits")
        focal_weight: float = Field(10.0, ge=0)
        threshold: float = Field(0.5, gt=0, lt=1)
        output_prior: float | None = Field(
            None, gt=0, lt=1, exclude_if=lambda value: value is None,  # runs from before the option keep their identity
            description="start the decoder's logits at this foreground probability (bias = logit(prior), as "
                        "RetinaNet/FCOS); None: PyTorch's random bias. A random start leaves some seeds far "
                        "slower to converge (see initialise_output_prior)")

    def __init__(self, params: "Segmentation.Params", context: Any = None) -> None:
        super().__init__(params, context)
        self.focal = FocalLoss(gamma=2.0, use_softmax=False)

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.params.focal_weight * self.focal(logits, target) - torch.log(soft_dice(logits, target))

    def evaluate(self, encoders: Encoders, source: Any, device: torch.device) -> TaskResult:
        p = self.params
        findings = p.findings or list(declared(source, "local_findings"))
        splits = {name: source.split(name) for name in ("train", "val", "test")}
        maps = split_feature_maps(encoders, splits, device, p.min_stride)
        local = declared(source, "local_findings")
        masks = {name: MaskRows(s, findings, local) for name, s in splits.items()}
        image_size = splits["train"].images.shape[-1]
        subsets = positives_first_fractions(masks["train"].any_per_image(), p.fractions, p.sampling_seed)
        scores, protocols, details, columns, samples = {}, {}, {}, {}, {}
        for done, (fraction, subset) in enumerate(subsets.items()):
            report(f"fraction {fraction_label(fraction)}", done, len(subsets))
            trained = [self._train(maps, masks, subset, fraction, image_size, device, head_seed(p.train_seed, j))
                       for j in range(p.heads_at(fraction))]
            fits = [fit for _, fit in trained]
            scored = scored_heads(p, fits)  # chosen on validation losses before any head sees the test split
            tested = [self._score_test(trained[j][0], maps["test"], masks["test"], device) for j in scored]
            # the scored heads: per-image Dice averaged over them, the pooled Dice's sums over all of them
            per_image = torch.stack([dice for dice, _, _ in tested]).mean(0)
            numerator, denominator = sum(t[1] for t in tested), sum(t[2] for t in tested)
            pooled = float(numerator.sum()) / max(1.0, float(denominator.sum()))
            label = fraction_label(fraction)
            scores[f"dice@{label}"] = float(per_image.mean())
            scores[f"pooled_dice@{label}"] = pooled
            columns[f"dice@{label}"] = Column(headline=True, description="per-image Dice, mean over the test set")
            columns[f"pooled_dice@{label}"] = Column(description="pixel-pooled Dice over the test set")
            samples[f"dice@{label}"] = Samples("mean", {"values": per_image.numpy().astype(np.float32)})
            samples[f"pooled_dice@{label}"] = Samples("ratio", {"numerator": numerator, "denominator": denominator})
            details[label] = fit_details(int(len(subset)), fits, scored)
            protocol = with_hash({
                "task": "segmentation", "dataset": source.protocol(), "target": sorted(findings),
                **({"decoder": p.decoder} if p.decoder != "auto" else {}),
                **({"output_prior": p.output_prior} if p.output_prior is not None else {}),
                "train_split": "train", "model_selection": "val", "test_split": "test", "fraction": fraction,
                "sampling_seed": p.sampling_seed, "train_images": int(len(subset)),
                **heads_protocol(p, fraction),
                "metric": f"Dice at threshold {p.threshold} per image (empty+empty = 1), mean over the test set; "
                          "pooled: 2ΣTP/(Σpred+Σtrue) over all test pixels",
            })
            protocols[f"dice@{label}"] = protocols[f"pooled_dice@{label}"] = protocol
        return TaskResult(scores, protocols, details, columns, samples)

    def _train(self, maps: dict[str, Any], masks: dict[str, MaskRows], subset: np.ndarray, fraction: float,
               image_size: int, device: torch.device, seed: int) -> tuple[torch.nn.Module, dict]:
        """One decoder trained on ``subset`` (the label fraction ``fraction``) of the training split
        from ``seed`` (initialisation and order), selected on the validation loss, and its fit. The
        test split is scored afterwards (:meth:`_score_test`), only for the heads that enter the score."""
        p = self.params
        torch.manual_seed(seed)
        decoder = build_decoder(p.decoder, maps["train"].channels, maps["train"].strides_shapes, image_size,
                                p.channels, output_stride=p.output_stride).to(device)
        if p.output_prior is not None:
            initialise_output_prior(decoder, p.output_prior)
        subset_t = torch.from_numpy(subset)

        def train_loss(index: torch.Tensor) -> torch.Tensor:
            rows = subset_t[index]
            return self.loss(decoder(maps["train"].batch(rows, device)), masks["train"].batch(rows, device))

        def val_loss() -> float:
            return self._mean_loss(decoder, maps["val"], masks["val"], device)

        fit = fit_head(p, decoder, len(subset), train_loss, val_loss, fraction, seed=seed)
        return decoder, fit

    @torch.no_grad()
    def _score_test(self, decoder: torch.nn.Module, maps: Any, masks: MaskRows, device: torch.device,
                    batch_size: int = 128) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
        """Per-image Dice [n] and per-image pooled-Dice terms 2·TP [n] and pred + true [n] of the test
        split, a batch at a time (per-image values do not depend on the batching; the pooled Dice is
        a ratio of integer sums)."""
        dice, numerator, denominator = [], [], []
        for i in range(0, len(maps), batch_size):
            index = torch.arange(i, min(i + batch_size, len(maps)))
            prediction = torch.sigmoid(decoder(maps.batch(index, device))).cpu() > self.params.threshold
            truth = masks.batch(index, torch.device("cpu")).bool()
            dice.append(dice_scores(prediction, truth)[0])
            numerator.append(2 * (prediction & truth).flatten(1).sum(1).numpy().astype(np.int64))
            denominator.append((prediction.flatten(1).sum(1) + truth.flatten(1).sum(1)).numpy().astype(np.int64))
        return torch.cat(dice), np.concatenate(numerator), np.concatenate(denominator)

    @torch.no_grad()
    def _mean_loss(self, decoder: torch.nn.Module, maps: Any, masks: MaskRows, device: torch.device,
                   batch_size: int = 128) -> float:
        total, count = 0.0, 0
        for i in range(0, len(maps), batch_size):
            index = torch.arange(i, min(i + batch_size, len(maps)))
            total += float(self.loss(decoder(maps.batch(index, device)), masks.batch(index, device))) * len(index)
            count += len(index)
        return total / count
