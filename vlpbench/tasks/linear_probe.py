"""Linear probe (MGCA's protocol): frozen image encoder, one linear layer on the global feature.

- label fractions (default 1 % / 10 % / 100 %) drawn from the training split with a fixed,
  recorded seed (42), nested and stratified (see :func:`nested_stratified_fractions`);
- frozen features computed once per checkpoint and reused across fractions and probe seeds;
- AdamW, early stopping on the validation loss (the test split is scored once, with the best
  validation model);
- multi-label data: macro AUROC over the labels that have a positive in the test split (the
  others are left out of the mean and counted; a binary dataset is one label); multi-class data
  (one positive per sample, or a dataset whose ``label_type`` is ``multiclass``, e.g. COVIDx):
  accuracy.

Interpretation (documented deviation): features are standardised with the training subset's
statistics and the linear layer starts at zero, so tiny label fractions train stably and the
result does not depend on an initialisation draw. Both are options.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torchmetrics.functional.classification import binary_auroc, multiclass_accuracy, multilabel_auroc

from vlpbench.core.component import Component
from vlpbench.core.context import BuildContext
from vlpbench.core.capabilities import declared
from vlpbench.core.errors import ConfigError
from vlpbench.engine.progress import report
from vlpbench.tasks.base import (Column, Encoders, Samples, TaskParams, TaskResult, fraction_label,
                                 nested_stratified_fractions, protocol_hash)


#: rows of the validation and test features standardised at a time (bounded memory; see _chunked_loss)
CHUNK = 16384


class LinearProbe(Component["LinearProbe.Params"]):
    requires = frozenset({"data:labels"})
    metric_version = "1"

    class Params(TaskParams):
        fractions: list[Annotated[float, Field(gt=0, le=1)]] = Field(
            default_factory=lambda: [0.01, 0.1, 1.0], min_length=1, description="label fractions, each in (0, 1]")
        sampling_seed: int = Field(42, description="seed of the label-fraction draw (recorded)")
        probe_seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
        label_type: Literal["auto", "multilabel", "multiclass"] = "auto"
        lr: float = Field(5e-3, gt=0)
        weight_decay: float = Field(1e-6, ge=0)
        batch_size: int = Field(64, ge=1)
        max_epochs: int = Field(50, ge=1)
        patience: int = Field(5, ge=1, description="epochs without validation-loss improvement before stopping")
        standardise: bool = True
        zero_init: bool = True

    def __init__(self, params: "LinearProbe.Params", context: BuildContext | None = None) -> None:
        super().__init__(params, context)
        if any(not 0 < f <= 1 for f in params.fractions):
            raise ConfigError(f"linear_probe.fractions = {params.fractions}: each fraction must be in (0, 1].")

    def evaluate(self, encoders: Encoders, source: Any, device: torch.device) -> TaskResult:
        splits = {name: source.split(name) for name in ("train", "val", "test")}
        labels = {name: np.asarray(s.labels) for name, s in splits.items()}
        single = bool((labels["train"].sum(1) == 1).all())
        label_type = declared(source, "label_type")  # real datasets say how their labels are scored
        if self.params.label_type == "auto" and label_type in ("multilabel", "multiclass"):
            single = label_type == "multiclass"
        multiclass = self.params.label_type == "multiclass" or (self.params.label_type == "auto" and single)
        features = {name: encoders.global_features(s.images, device) for name, s in splits.items()}
        subsets = nested_stratified_fractions(labels["train"], self.params.fractions, self.params.sampling_seed)
        metric = "accuracy" if multiclass else "auroc"
        test_labels = torch.from_numpy(labels["test"]).long()
        present = test_labels.sum(0) > 0
        scores, protocols, details = {}, {}, {"labels_without_test_positive": int((~present).sum())}
        columns, samples = {}, {}
        # an uninformed predictor: AUROC 0.5; accuracy of always answering the most frequent test class
        chance = float(labels["test"].mean(0).max()) if multiclass else 0.5
        for done, (fraction, subset) in enumerate(subsets.items()):
            report(f"fraction {fraction_label(fraction)}", done, len(subsets))
            values, outputs = [], []
            for probe_seed in self.params.probe_seeds:
                logits = self._fit_and_predict(features, labels, subset, probe_seed, multiclass)
                values.append(self._score(logits, test_labels, present, multiclass))
                outputs.append(logits)
            column = f"{metric}@{fraction_label(fraction)}"
            scores[column] = float(np.mean(values))
            columns[column] = Column(headline=True, chance=chance)
            samples[column] = self._samples(torch.stack(outputs), test_labels, present, multiclass)
            protocol = {
                "task": "linear_probe", "dataset": source.protocol(), "train_split": "train",
                "model_selection": "val", "test_split": "test", "fraction": fraction,
                "sampling_seed": self.params.sampling_seed, "train_samples": int(len(subset)),
                "metric": ("macro AUROC over labels with a test positive (torchmetrics)" if not multiclass
                           else "multi-class accuracy (torchmetrics, micro)"),
            }
            protocol["hash"] = protocol_hash(protocol)
            protocols[column] = protocol
        return TaskResult(scores, protocols, details, columns, samples)

    @staticmethod
    def _samples(logits: torch.Tensor, target: torch.Tensor, present: torch.Tensor, multiclass: bool) -> Samples:
        """Per-test-case outputs [probe seeds, n, …] and targets behind :meth:`_score`."""
        if multiclass:
            return Samples("accuracy", {"predicted": logits.argmax(-1).numpy().astype(np.int16),
                                        "labels": target.argmax(1).numpy().astype(np.int16)})
        keep = present.numpy()
        return Samples("auroc", {"scores": logits.sigmoid()[..., keep].numpy().astype(np.float32),
                                 "labels": target[:, keep].numpy().astype(np.uint8)})

    def _fit_and_predict(self, features: dict[str, torch.Tensor], labels: dict[str, np.ndarray],
                         subset: np.ndarray, seed: int, multiclass: bool) -> torch.Tensor:
        p = self.params
        x_train = features["train"][torch.from_numpy(subset)]  # a copy (the subset's rows), standardised in place
        y_train = torch.from_numpy(labels["train"][subset]).float()
        mean, std = (x_train.mean(0), x_train.std(0, unbiased=False).clamp_min(1e-6)) if p.standardise else (0.0, 1.0)
        x_train.sub_(mean).div_(std)  # the same operations as (x − mean) / std, without a second copy
        x_val, y_val = features["val"], torch.from_numpy(labels["val"]).float()
        generator = torch.Generator().manual_seed(seed)
        layer = torch.nn.Linear(x_train.shape[1], y_train.shape[1])
        if p.zero_init:
            torch.nn.init.zeros_(layer.weight), torch.nn.init.zeros_(layer.bias)
        optimizer = torch.optim.AdamW(layer.parameters(), lr=p.lr, weight_decay=p.weight_decay)

        def loss_of(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            out = layer(x)
            return F.cross_entropy(out, y.argmax(1)) if multiclass else F.binary_cross_entropy_with_logits(out, y)

        best, best_state, waited = float("inf"), None, 0
        for _ in range(p.max_epochs):
            order = torch.randperm(len(x_train), generator=generator)
            for start in range(0, len(order), p.batch_size):
                idx = order[start:start + p.batch_size]
                optimizer.zero_grad()
                loss_of(x_train[idx], y_train[idx]).backward()
                optimizer.step()
            with torch.no_grad():
                val_loss = self._chunked_loss(loss_of, x_val, y_val, mean, std)
            if val_loss < best - 1e-6:
                best, waited = val_loss, 0
                best_state = {k: v.clone() for k, v in layer.state_dict().items()}
            else:
                waited += 1
                if waited >= p.patience:
                    break
        layer.load_state_dict(best_state)
        with torch.no_grad():
            test = features["test"]
            return torch.cat([layer((test[i:i + CHUNK] - mean) / std) for i in range(0, len(test), CHUNK)])

    @staticmethod
    def _chunked_loss(loss_of: Any, x: torch.Tensor, y: torch.Tensor, mean: Any, std: Any) -> float:
        """The mean loss over a split standardised ``CHUNK`` rows at a time (never a standardised copy
        of the whole split). A split of at most ``CHUNK`` rows is one chunk: the former computation,
        bit for bit; larger ones average the chunks' mean losses weighted by their rows."""
        if len(x) <= CHUNK:
            return float(loss_of((x - mean) / std, y))
        total = sum(float(loss_of((x[i:i + CHUNK] - mean) / std, y[i:i + CHUNK])) * len(x[i:i + CHUNK])
                    for i in range(0, len(x), CHUNK))
        return total / len(x)

    @staticmethod
    def _score(logits: torch.Tensor, target: torch.Tensor, present: torch.Tensor, multiclass: bool) -> float:
        if multiclass:
            return float(multiclass_accuracy(logits, target.argmax(1), num_classes=target.shape[1], average="micro"))
        if target.shape[1] == 1:  # a binary dataset (RSNA, SIIM, Object-CXR): one label
            return float(binary_auroc(logits[:, 0].sigmoid(), target[:, 0])) if bool(present[0]) else float("nan")
        per_label = multilabel_auroc(logits.sigmoid(), target, num_labels=target.shape[1], average=None)
        return float(per_label[present].mean())
