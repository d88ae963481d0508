"""The one table of component kinds: what each kind is, where it sits in a run config, what it must offer.

Every place that needs to know how a kind fits into an experiment reads :data:`KIND_TABLE`: the
registry (which kinds exist), the config loader (which specs of a run config name components), the
JSON Schema (which properties become a ``oneOf`` over the registered components), the run identity
(which specs carry a negative ``scope``), the conformance kit and the two-process check (how a
component is put into a tiny objective) and the board (whose scopes it lists). Adding a kind is one
row here (and the code that builds and calls it).

A kind's ``interface`` is a :class:`typing.Protocol` naming the methods and attributes the engine
calls on a built component of that kind; :func:`missing_members` checks a class or an instance
against it. A kind's ``metadata`` names its metadata model in :mod:`vlpbench.core.metadata` (what a
component of the kind declares about itself, validated when it is loaded); the model is imported on
first use (:meth:`Kind.metadata_model`), as it needs pydantic. Nothing here imports torch or
pydantic: listing components must stay cheap.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:  # the types the interfaces speak of; importing them here would import torch
    from torch import Tensor

    from vlpbench.core.features import AlignmentInputs, ImageFeatures, TextFeatures
    from vlpbench.core.metadata import ComponentMetadata
    from vlpbench.objective.contracts import DirectionAdjustment, NegativeAdjustment, Positives


# --- the interfaces the engine calls -------------------------------------------------------------

@runtime_checkable
class Dataset(Protocol):
    """A data source: named splits (``pretrain``, ``train``, ``val``, ``test``), the image size and
    label names the run is built with, and the protocol (dataset version, splits) a score is under."""

    image_size: int
    label_names: Any

    def split(self, name: str) -> Any: ...

    def protocol(self) -> dict[str, Any]: ...


@runtime_checkable
class ImageEncoder(Protocol):
    """``forward(images)`` → ``ImageFeatures`` (global vector, patch tokens, grid) for pretraining;
    ``global_features`` for the linear probes, ``feature_maps`` for segmentation and detection."""

    def forward(self, images: Tensor) -> ImageFeatures: ...

    def global_features(self, images: Tensor) -> Tensor: ...

    def feature_maps(self, images: Tensor, min_stride: int = ...) -> list[Tensor]: ...


@runtime_checkable
class TextEncoder(Protocol):
    """``tokenize(reports)`` (each report a list of sentences) and ``forward(input_ids,
    attention_mask, sentence_index)`` → ``TextFeatures`` (global, word and sentence vectors)."""

    def tokenize(self, reports: list[list[str]]) -> Any: ...

    def forward(self, input_ids: Tensor, attention_mask: Tensor, sentence_index: Tensor) -> TextFeatures: ...


@runtime_checkable
class GlobalLoss(Protocol):
    """The image-report loss on global vectors, given the miner's positives and the weightings'
    adjustment per direction."""

    def forward(self, image: Tensor, text: Tensor, positives: Positives, image_to_text: DirectionAdjustment,
                text_to_image: DirectionAdjustment) -> Tensor: ...


@runtime_checkable
class PositiveMiner(Protocol):
    """``forward(inputs)`` → ``Positives`` (affinity [B,B] with a diagonal of 1, pairs to ignore)."""

    def forward(self, inputs: AlignmentInputs) -> Positives: ...


@runtime_checkable
class NegativeWeighting(Protocol):
    """``forward(inputs, positives)`` → ``NegativeAdjustment`` (weights, extra columns, own terms)."""

    def forward(self, inputs: AlignmentInputs, positives: Positives) -> NegativeAdjustment: ...


@runtime_checkable
class Term(Protocol):
    """A local head or an auxiliary: ``forward(inputs)`` → its named loss terms (before its weight)."""

    def forward(self, inputs: AlignmentInputs) -> dict[str, Tensor]: ...


@runtime_checkable
class Task(Protocol):
    """``evaluate(encoders, source, device)`` → a ``TaskResult`` (scores, each with its protocol)."""

    def evaluate(self, encoders: Any, source: Any, device: Any) -> Any: ...


@runtime_checkable
class Launcher(Protocol):
    """Built without arguments; ``launch(experiment, results_root, **options)`` runs an experiment."""

    def launch(self, experiment: Any, results_root: Any, **options: Any) -> Any: ...


@runtime_checkable
class SweepLauncher(Protocol):
    """A launcher that can also run sweeps: ``launch_sweep(plan, results_root, resume=...)``."""

    def launch_sweep(self, plan: Any, results_root: Any, resume: bool = ...) -> Any: ...


def interface_members(interface: type) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(methods, attributes) an interface declares, in declaration order."""
    methods = tuple(n for n, v in vars(interface).items() if callable(v) and not n.startswith("_"))
    return methods, tuple(getattr(interface, "__annotations__", {}))


def missing_members(interface: type, obj: Any) -> list[str]:
    """The members of ``interface`` that ``obj`` lacks: a method must be callable; an attribute must be
    present on an instance (a class is checked for its methods only: attributes are often set in
    ``__init__``)."""
    methods, attributes = interface_members(interface)
    missing = [f"{m}()" for m in methods if not callable(getattr(obj, m, None))]
    if not isinstance(obj, type):
        missing += [a for a in attributes if not hasattr(obj, a)]
    return missing


# --- the table -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Slot:
    """Where a kind's specs sit in a run config.

    ``path``: the keys as written in a config file (``objective.global``, not the Python name);
    ``many``: a list of specs rather than one; ``scoped``: each spec may set its own negative
    ``scope``; ``scheduled``: each spec has a ``weight`` and a ``start``; ``nested``: (parameter,
    kind) of a component a spec may name in its own parameters (a task's own ``dataset``).
    """

    path: tuple[str, ...]
    many: bool = False
    scoped: bool = False
    scheduled: bool = False
    nested: tuple[str, str] | None = None

    @property
    def key(self) -> str:
        return ".".join(self.path)

    @property
    def in_objective(self) -> bool:
        return self.path[0] == "objective"

    def entry(self, spec: Any) -> dict[str, Any]:
        """``spec`` as it is written into its parent section: ``{"local_heads": [spec]}``."""
        return {self.path[-1]: [spec] if self.many else spec}

    def specs(self, section: dict[str, Any]) -> list[Any]:
        """The specs of this slot in its parent section (a resolved config's dict), one or many."""
        value = section.get(self.path[-1])
        if self.many:
            return list(value or [])
        return [] if value is None else [value]

    def read(self, config: Any) -> Any:
        """The slot's value in a validated config model (keys matched by alias, as written)."""
        value = config
        for key in self.path:
            fields = type(value).model_fields
            name = next((n for n, f in fields.items() if (f.alias or n) == key), key)
            value = getattr(value, name)
        return value


@dataclass(frozen=True)
class Kind:
    """One component kind: its name, what it is for, its config slot (``None``: not named in a run
    config), its interface (``None``: not a built object), whether the conformance kit builds it
    on its own from its defaults (encoders and data sources; objective terms and tasks are checked
    inside a tiny run instead) and the name of its metadata model in :mod:`vlpbench.core.metadata`."""

    name: str
    description: str
    slot: Slot | None
    interface: type | None
    builds_alone: bool = False
    metadata: str = "ComponentMetadata"

    def metadata_model(self) -> type[ComponentMetadata]:
        """The pydantic model of what a component of this kind declares (imports pydantic on first use)."""
        model: type[ComponentMetadata] = getattr(importlib.import_module("vlpbench.core.metadata"), self.metadata)
        return model


KIND_TABLE: tuple[Kind, ...] = (
    Kind("dataset", "pretraining and downstream data sources", Slot(("data",)), Dataset, builds_alone=True,
         metadata="DatasetMetadata"),
    Kind("image_encoder", "image -> global vector v [B,D] and patch tokens P [B,N,D] with grid shape",
         Slot(("model", "image_encoder")), ImageEncoder, builds_alone=True, metadata="EncoderMetadata"),
    Kind("text_encoder", "report -> global vector t [B,D], word tokens W [B,M,D], sentence vectors S [B,T,D]",
         Slot(("model", "text_encoder")), TextEncoder, builds_alone=True, metadata="EncoderMetadata"),
    Kind("global_loss", "image-report alignment loss on global vectors (InfoNCE, sigmoid)",
         Slot(("objective", "global")), GlobalLoss, metadata="ObjectiveMetadata"),
    Kind("positive_miner", "affinity matrix A [B,B] of positives and a mask of pairs to ignore",
         Slot(("objective", "positive_miner"), scoped=True), PositiveMiner, metadata="ObjectiveMetadata"),
    Kind("negative_weighting", "weights on negatives, extra candidate columns, extra loss terms",
         Slot(("objective", "negative_weighting"), many=True, scoped=True), NegativeWeighting,
         metadata="ObjectiveMetadata"),
    Kind("local_head", "fine-grained alignment between patches, words and sentences",
         Slot(("objective", "local_heads"), many=True, scoped=True, scheduled=True), Term, metadata="ObjectiveMetadata"),
    Kind("auxiliary", "auxiliary objectives (e.g. masked image reconstruction)",
         Slot(("objective", "auxiliaries"), many=True, scoped=True, scheduled=True), Term, metadata="ObjectiveMetadata"),
    Kind("task", "downstream evaluation of a frozen image encoder",
         Slot(("tasks",), many=True, nested=("dataset", "dataset")), Task, metadata="TaskMetadata"),
    Kind("launcher", "where runs execute (in process, Slurm, ...)", None, Launcher, metadata="LauncherMetadata"),
    Kind("preset", "a method's full objective as config overrides (`preset: NAME` in a variant)", None, None,
         metadata="PresetMetadata"),
)

#: Kind name → record.
KIND_BY_NAME: dict[str, Kind] = {k.name: k for k in KIND_TABLE}


def kind_of(name: str) -> Kind:
    """The record of kind ``name`` (a KeyError for an unknown kind: callers validate names first)."""
    return KIND_BY_NAME[name]


def slots() -> list[tuple[str, Slot]]:
    """(kind, slot) of every kind a run config names, in the table's order."""
    return [(k.name, k.slot) for k in KIND_TABLE if k.slot is not None]


def objective_slots() -> list[tuple[str, Slot]]:
    """(kind, slot) of the terms of the pretraining objective (the slots under ``objective.``)."""
    return [(name, slot) for name, slot in slots() if slot.in_objective]


def scoped_slots() -> list[tuple[str, Slot]]:
    """(kind, slot) of the kinds whose specs may set their own negative ``scope``."""
    return [(name, slot) for name, slot in slots() if slot.scoped]
