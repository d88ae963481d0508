"""The pretraining model: image encoder + text encoder + objective, built from a run config."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from vlpbench.core.build import build_component
from vlpbench.config.schema import RunConfig
from vlpbench.core.context import BuildContext
from vlpbench.data.pipeline import PretrainData, prepare_images
from vlpbench.core.features import AlignmentInputs, Batch
from vlpbench.models.requests import apply_feature_requests
from vlpbench.objective.objective import Objective, ObjectiveOutput
from vlpbench.core.registry import Registry


class VLPModel(nn.Module):
    def __init__(self, image_encoder: nn.Module, text_encoder: nn.Module, objective: Objective) -> None:
        super().__init__()
        self.image_encoder, self.text_encoder, self.objective = image_encoder, text_encoder, objective
        self.channels_last = False  # set by the trainer (pretrain.channels_last)

        self._text_takes_count = "num_sentences" in inspect.signature(text_encoder.forward).parameters

    def forward(self, batch: Batch, progress: float) -> ObjectiveOutput:
        """One step's objective. ``batch.images`` may be the loader's uint8 pixels or normalised
        floats (tests, tools); either is augmented here, on the model's device, when the batch
        carries augmentation parameters."""
        images = prepare_images(batch)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        image = self.image_encoder(images)
        count = batch.extras.get("num_sentences")
        if count is not None and self._text_takes_count:
            text = self.text_encoder(batch.input_ids, batch.attention_mask, batch.sentence_index, num_sentences=count)
        else:
            text = self.text_encoder(batch.input_ids, batch.attention_mask, batch.sentence_index)
        return self.objective(AlignmentInputs(image, text, batch, progress))


def probe_patch_grid(image_encoder: nn.Module, image_size: int) -> tuple[int, int]:
    """The patch grid the encoder gives at ``image_size`` (one tiny forward pass, RNG untouched)."""
    was_training = image_encoder.training
    image_encoder.eval()
    with torch.no_grad():
        grid = image_encoder(torch.zeros(1, 1, image_size, image_size)).grid
    image_encoder.train(was_training)
    return (int(grid[0]), int(grid[1]))


@dataclass
class BuiltRun:
    model: VLPModel
    data_source: Any
    pretrain: PretrainData
    context: BuildContext


def build_run(config: RunConfig, registry: Registry, seed: int, steps_per_epoch_hint: int | None = None) -> BuiltRun:
    """Data, encoders and objective for one run, on the CPU, seeded."""
    torch.manual_seed(seed)
    context = BuildContext(embed_dim=config.model.embed_dim, seed=seed)
    source = build_component(registry, "dataset", config.data, context)
    split = source.split("pretrain")
    context.image_size = source.image_size
    context.corpus = list(split.reports)
    context.corpus_sentences = [list(report) for report in split.sentences]
    context.label_names = tuple(source.label_names)
    steps_per_epoch = len(split) // config.pretrain.batch_size
    context.total_steps = max(1, steps_per_epoch * config.pretrain.epochs)
    image_encoder = build_component(registry, "image_encoder", config.model.image_encoder, context)
    context.built["image_encoder"] = image_encoder
    context.patch_grid = probe_patch_grid(image_encoder, context.image_size)
    text_encoder = build_component(registry, "text_encoder", config.model.text_encoder, context)
    context.built["text_encoder"] = text_encoder
    objective = Objective(config.objective, registry, context)
    apply_feature_requests(objective, image_encoder, text_encoder)  # optional outputs some component asks for
    tokens = text_encoder.tokenize(split.sentences)
    most = getattr(getattr(text_encoder, "params", None), "max_sentences", None) or 1 << 30
    counts = torch.tensor([min(len(report), most) for report in split.sentences], dtype=torch.long)
    tensors = PretrainData(split.images, tokens, torch.from_numpy(np.asarray(split.labels)).float(), counts,
                           config.pretrain.sentence_shuffle)
    return BuiltRun(VLPModel(image_encoder, text_encoder, objective), source, tensors, context)
