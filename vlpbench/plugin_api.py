"""The stable surface for plugin authors: everything a vlpbench plugin's code imports.

A plugin imports vlpbench only from here (its tests may also use :mod:`vlpbench.devkit.testing`)::

    from vlpbench.plugin_api import AlignmentInputs, BuildContext, Positives, hookimpl

The names in ``__all__`` are the promise: they keep their meaning and signature across releases,
and one is renamed or removed only after a release in which the old name still works. Everything
else under ``vlpbench.*`` is internal and may move between releases; importing it from a plugin is
what this module exists to make unnecessary. ``tests/test_plugin_api.py`` checks that the shipped
plugins and the ``vlpbench new-plugin`` scaffold import nothing else.

What is here:

* registration: :data:`hookimpl` (the pluggy marker of ``vlpbench_register``), :class:`Registrar`;
* building: :class:`BuildContext` (sizes, corpus, schedule a component is built with); the typed
  bases :class:`Component` and :class:`ModuleComponent` (a ``torch.nn.Module``), whose constructor
  stores ``params`` and ``context`` so a component is its ``Params`` and its computation;
* errors a component raises on bad input: :class:`UserError`, :class:`ConfigError`, :class:`DataError`;
* the contracts between encoders and the objective: :class:`AlignmentInputs`, :class:`Batch`,
  :class:`ImageFeatures`, :class:`TextFeatures`; what miners and weightings return:
  :class:`Positives`, :class:`DirectionAdjustment`, :class:`NegativeAdjustment`;
* building blocks of losses: the soft-target InfoNCE direction and the sigmoid pair loss (and the
  built-in :class:`InfoNCELoss`, :class:`SigmoidLoss`), within-report InfoNCE and masked means,
  rows gathered across processes for the ``gathered`` negative scope;
* text helpers: sentence means of word tokens, word-piece → word aggregation, report packing and a
  word-piece tokenizer for text encoders, TF-IDF / pretrained report vectors;
* tasks and datasets: :class:`Encoders`, :class:`TaskParams`, :class:`TaskResult`, :class:`Column`,
  frozen features and protocol hashing; :class:`RealDataset`, :class:`RealParams`, :class:`Record`;
* the metadata models of the kinds (what a component declares as class attributes, validated when it
  is loaded): :class:`ComponentMetadata` and :class:`DatasetMetadata`, :class:`EncoderMetadata`,
  :class:`ObjectiveMetadata`, :class:`TaskMetadata`, :class:`LauncherMetadata`, :class:`PresetMetadata`.

Importing this module is light (no torch): a plugin's ``plugin.py`` imports :data:`hookimpl` from
here while ``vlpbench --help`` and ``vlpbench plugins`` start. The names that need torch, numpy or
pydantic are imported on first use (PEP 562 module ``__getattr__``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from vlpbench.core.component import Component
from vlpbench.core.context import BuildContext
from vlpbench.core.errors import ConfigError, DataError, UserError
from vlpbench.core.hookspecs import hookimpl
from vlpbench.core.registry import Registrar

if TYPE_CHECKING:  # pragma: no cover  (what type checkers and IDEs see for the lazy names)
    from vlpbench.core.module_component import ModuleComponent
    from vlpbench.data.real.base import RealDataset, RealParams
    from vlpbench.data.real.common import Record
    from vlpbench.core.features import AlignmentInputs, Batch, ImageFeatures, TextFeatures
    from vlpbench.core.metadata import (ComponentMetadata, DatasetMetadata, EncoderMetadata, LauncherMetadata,
                                        ObjectiveMetadata, PresetMetadata, TaskMetadata)
    from vlpbench.models.report_vectors import build_report_vectors, report_similarity
    from vlpbench.models.text_bert import sentence_means
    from vlpbench.models.tokenization import TokenizedReports, pack_reports, train_wordpiece
    from vlpbench.models.word_pieces import aggregate, piece_words, slot_mask
    from vlpbench.objective.contracts import DirectionAdjustment, NegativeAdjustment, Positives
    from vlpbench.objective.global_losses import InfoNCELoss, SigmoidLoss, sigmoid_pair_loss, soft_infonce_direction
    from vlpbench.objective.local_losses import masked_mean, mean_over_reports, within_report_infonce
    from vlpbench.objective.scope import gather_constant, gather_rows
    from vlpbench.tasks.base import Column, Encoders, TaskParams, TaskResult, frozen_global_features, with_hash

#: Public name → the internal module that defines it (imported on first use; these need torch).
_LAZY: dict[str, str] = {
    # the base of a component that is a torch module
    "ModuleComponent": "vlpbench.core.module_component",
    # the tensors between encoders and the objective
    "AlignmentInputs": "vlpbench.core.features",
    "Batch": "vlpbench.core.features",
    "ImageFeatures": "vlpbench.core.features",
    "TextFeatures": "vlpbench.core.features",
    # what a positive miner and a negative weighting return
    "Positives": "vlpbench.objective.contracts",
    "DirectionAdjustment": "vlpbench.objective.contracts",
    "NegativeAdjustment": "vlpbench.objective.contracts",
    # global losses and their building blocks
    "InfoNCELoss": "vlpbench.objective.global_losses",
    "SigmoidLoss": "vlpbench.objective.global_losses",
    "soft_infonce_direction": "vlpbench.objective.global_losses",
    "sigmoid_pair_loss": "vlpbench.objective.global_losses",
    # local heads' building blocks
    "within_report_infonce": "vlpbench.objective.local_losses",
    "mean_over_reports": "vlpbench.objective.local_losses",
    "masked_mean": "vlpbench.objective.local_losses",
    # the gathered negative scope: rows of every process's batch
    "gather_rows": "vlpbench.objective.scope",
    "gather_constant": "vlpbench.objective.scope",
    # text: sentences, word pieces, tokenization, report vectors
    "sentence_means": "vlpbench.models.text_bert",
    "aggregate": "vlpbench.models.word_pieces",
    "piece_words": "vlpbench.models.word_pieces",
    "slot_mask": "vlpbench.models.word_pieces",
    "TokenizedReports": "vlpbench.models.tokenization",
    "pack_reports": "vlpbench.models.tokenization",
    "train_wordpiece": "vlpbench.models.tokenization",
    "build_report_vectors": "vlpbench.models.report_vectors",
    "report_similarity": "vlpbench.models.report_vectors",
    # downstream tasks
    "Encoders": "vlpbench.tasks.base",
    "TaskParams": "vlpbench.tasks.base",
    "TaskResult": "vlpbench.tasks.base",
    "Column": "vlpbench.tasks.base",
    "frozen_global_features": "vlpbench.tasks.base",
    "with_hash": "vlpbench.tasks.base",
    # datasets read from a folder of images and a table
    "RealDataset": "vlpbench.data.real.base",
    "RealParams": "vlpbench.data.real.base",
    "Record": "vlpbench.data.real.common",
    # what a component of each kind declares about itself (pydantic models)
    "ComponentMetadata": "vlpbench.core.metadata",
    "DatasetMetadata": "vlpbench.core.metadata",
    "EncoderMetadata": "vlpbench.core.metadata",
    "ObjectiveMetadata": "vlpbench.core.metadata",
    "TaskMetadata": "vlpbench.core.metadata",
    "LauncherMetadata": "vlpbench.core.metadata",
    "PresetMetadata": "vlpbench.core.metadata",
}

__all__ = [
    # registration, building, errors (imported with this module)
    "hookimpl", "Registrar", "BuildContext", "UserError", "ConfigError", "DataError",
    # the typed bases of a component
    "Component", "ModuleComponent",
    # features and contracts
    "AlignmentInputs", "Batch", "ImageFeatures", "TextFeatures",
    "Positives", "DirectionAdjustment", "NegativeAdjustment",
    # losses and their building blocks
    "InfoNCELoss", "SigmoidLoss", "soft_infonce_direction", "sigmoid_pair_loss",
    "within_report_infonce", "mean_over_reports", "masked_mean", "gather_rows", "gather_constant",
    # text
    "sentence_means", "aggregate", "piece_words", "slot_mask", "TokenizedReports", "pack_reports", "train_wordpiece",
    "build_report_vectors", "report_similarity",
    # tasks and datasets
    "Encoders", "TaskParams", "TaskResult", "Column", "frozen_global_features", "with_hash",
    "RealDataset", "RealParams", "Record",
    # the metadata models of the kinds
    "ComponentMetadata", "DatasetMetadata", "EncoderMetadata", "ObjectiveMetadata", "TaskMetadata",
    "LauncherMetadata", "PresetMetadata",
]


def __getattr__(name: str) -> Any:
    """Import a torch-dependent public name on first use, and keep it (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'vlpbench.plugin_api' has no attribute '{name}' (its public names are "
                             "listed in vlpbench.plugin_api.__all__)")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
