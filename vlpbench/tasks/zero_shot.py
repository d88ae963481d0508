"""Zero-shot classification: image–prompt similarity, AUROC per finding and their mean.

For each finding the dataset gives prompts that assert it and prompts that deny it. The image's
score is ``softmax([cos(v, p̄⁺), cos(v, p̄⁻)] / τ)[0]`` with p̄ the mean embedding of each set
(CheXzero's positive-vs-negative contrast); AUROC (torchmetrics) per finding over the test split,
and the macro mean over the findings with a positive in it (the others are counted and left out).
Nothing is trained, so there is no fraction and no model selection.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torchmetrics.functional.classification import binary_auroc

from vlpbench.core.component import Component
from vlpbench.tasks.base import (Column, Encoders, Samples, TaskParams, TaskResult, scored_cases, test_cases_field,
                                 text_embeddings, with_hash)


class ZeroShot(Component["ZeroShot.Params"]):
    requires = frozenset({"data:prompts", "data:labels", "text:global"})
    metric_version = "1"

    class Params(TaskParams):
        temperature: float = Field(0.07, gt=0, description="softmax temperature of the pos/neg contrast (rank-neutral)")
        split: str = Field("test", description="split scored")
        test_cases: int | None = test_cases_field()

    def evaluate(self, encoders: Encoders, source: Any, device: torch.device) -> TaskResult:
        text_encoder = encoders.require_text("zero_shot")
        split = source.split(self.params.split)
        n = scored_cases("zero_shot", split.images, self.params.test_cases)
        labels = torch.from_numpy(np.asarray(split.labels)[:n]).long()
        images = encoders.test_embeddings(split.images, n, device)
        prompts = source.prompts()
        scores, details = {}, {"per_finding": {}, "findings_not_scorable": []}
        per_finding, probabilities, scored = [], [], []
        for k, finding in enumerate(source.label_names):
            if finding not in prompts:
                continue
            sets = [text_embeddings(text_encoder, [[p] for p in prompts[finding][side]], device).mean(0)
                    for side in ("positive", "negative")]
            prototypes = F.normalize(torch.stack(sets), dim=-1)  # [2, D]
            probability = torch.softmax(images @ prototypes.t() / self.params.temperature, dim=1)[:, 0]
            if labels[:, k].sum() == 0 or labels[:, k].sum() == len(labels):
                details["findings_not_scorable"].append(finding)
                continue
            auroc = float(binary_auroc(probability, labels[:, k]))
            details["per_finding"][finding] = auroc
            per_finding.append(auroc)
            probabilities.append(probability.numpy().astype(np.float32))
            scored.append(k)
        scores["auroc"] = float(np.mean(per_finding)) if per_finding else float("nan")
        protocol = with_hash({
            "task": "zero_shot", "dataset": source.protocol(), "split": self.params.split,
            **({"test_cases": n} if self.params.test_cases is not None else {}),
            "prompts": {f: prompts[f] for f in sorted(prompts)},
            "metric": "macro AUROC over findings with a positive (torchmetrics binary_auroc); score = "
                      "softmax over mean positive vs mean negative prompt similarity",
        })
        for finding, value in details["per_finding"].items():
            scores[f"auroc/{finding}"] = value
        columns = {column: Column(headline=column == "auroc", chance=0.5) for column in scores}
        samples = {}
        if scored:
            matrix, truth = np.stack(probabilities, 1), labels.numpy()[:, scored].astype(np.uint8)
            samples["auroc"] = Samples("auroc", {"scores": matrix, "labels": truth})
            for i, k in enumerate(scored):
                samples[f"auroc/{source.label_names[k]}"] = Samples("auroc", {"scores": matrix[:, i:i + 1],
                                                                             "labels": truth[:, i:i + 1]})
        return TaskResult(scores, {column: protocol for column in scores}, details, columns, samples)
