"""What a component *may* offer beyond its kind's interface, in one place.

A kind's interface (:mod:`vlpbench.core.kinds`) is what the engine always calls. Some members are
optional: a data source that reads local files can be ``prepare()``-d and ``verify()``-ed, a task may
declare the features it ``requires``, an objective term may say it compares nothing across the batch
(``batch_negatives = False``). The engine asks about them only through this module, so the optional
contract is written down once, with what each member means and what its absence means:

* an optional **method** belongs to a capability :class:`~typing.Protocol` below; ask with
  :func:`offers` (``offers(source, Preparable)``), which looks the methods up by attribute — so a
  wrapper that forwards attributes (the validation-mode source) offers what the wrapped source offers,
  on every Python version (``isinstance`` against a runtime-checkable protocol ignores ``__getattr__``
  from Python 3.12 on);
* an optional **attribute** is a row of :data:`OPTIONAL_ATTRIBUTES` (which kinds declare it, its
  default, its meaning); read it with :func:`declared` (``declared(task, "requires")``), which refuses
  a name that is not in the table.

Nothing here imports torch: the config loader reads declared attributes.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

from vlpbench.core.kinds import missing_members

__all__ = ["Preparable", "Verifiable", "HasStatistics", "HasProvenance", "Subsettable", "GrantsFeatures",
           "SharesDensePass", "OptionalAttribute", "OPTIONAL_ATTRIBUTES", "offers", "declared"]


# --- optional methods ----------------------------------------------------------------------------

@runtime_checkable
class Preparable(Protocol):
    """A data source that checks its files and builds its image store before a run starts (so a
    missing file stops the run at its start, not after pretraining)."""

    def prepare(self) -> Any: ...


@runtime_checkable
class Verifiable(Protocol):
    """A data source read from local files that ``vlpbench data verify`` can check."""

    def verify(self) -> Any: ...


@runtime_checkable
class HasStatistics(Protocol):
    """A data source that reports statistics of its data (written to ``provenance.json``)."""

    def statistics(self) -> dict[str, Any]: ...


@runtime_checkable
class HasProvenance(Protocol):
    """A task's own data source that reports its provenance (protocol with the manifest hash, skipped
    bad samples), recorded per task in ``provenance.json``."""

    def provenance(self) -> dict[str, Any]: ...


@runtime_checkable
class Subsettable(Protocol):
    """A split that takes its own subset (validation-mode evaluation holds part of ``train`` out);
    a split without it must be a dataclass of per-sample arrays and lists."""

    def subset(self, indices: Any) -> Any: ...


@runtime_checkable
class GrantsFeatures(Protocol):
    """An encoder that can switch on extra features the objective's components request
    (``feature_requests``) and returns the names it granted."""

    def request_features(self, names: set[str]) -> Any: ...


@runtime_checkable
class SharesDensePass(Protocol):
    """An image encoder that gives its dense feature maps and its pre-projection global feature
    from one pass, so an evaluation with dense tasks runs it once per image, not twice (without
    it the global features take a pass of their own)."""

    def feature_maps_and_global(self, images: Any, min_stride: int = 4) -> Any: ...


def offers(obj: Any, capability: type) -> bool:
    """Whether ``obj`` (a component, or its class) has every method of ``capability``."""
    return not missing_members(capability, obj)


# --- optional attributes -------------------------------------------------------------------------

@dataclass(frozen=True)
class OptionalAttribute:
    """An attribute a component may declare: on which kinds (or objects), its default, its meaning."""

    on: str
    default: Any
    meaning: str


OPTIONAL_ATTRIBUTES: dict[str, OptionalAttribute] = {
    "Params": OptionalAttribute(
        "every kind", None, "the pydantic model of the component's parameters; none: it takes no parameters"),
    "provides": OptionalAttribute(
        "dataset, image_encoder, text_encoder", (), "what the component gives the others (a source's labels, reports, "
        "masks, boxes; an encoder's features), checked against the `requires` of the run's other components"),
    "requires": OptionalAttribute(
        "every kind", (), "what the component needs from the data or the encoders (e.g. text:global); "
                          "a task that needs a text encoder is skipped without one"),
    "protocol_version": OptionalAttribute(
        "dataset", "unversioned", "the version of the source's protocol (splits, labels); enters the run hash"),
    "downstream_only_params": OptionalAttribute(
        "dataset", (), "parameters that only change downstream evaluation: left out of the pretraining identity"),
    "local_findings": OptionalAttribute(
        "dataset, split", (), "the findings with masks or boxes (segmentation and detection score these)"),
    "label_type": OptionalAttribute(
        "dataset", None, "how the labels are scored (multilabel, multiclass, ...); none: the task's own choice"),
    "evaluation": OptionalAttribute(
        "dataset", "test", "which split scores are computed on: `validation` for the validation-mode source"),
    "mask_bits": OptionalAttribute(
        "split", None, "packed per-finding masks [N, findings, bits] of a split with masks"),
    "metric_version": OptionalAttribute(
        "task", "", "the version of the task's metric code; recorded next to its scores"),
    "batch_negatives": OptionalAttribute(
        "global_loss, negative_weighting, local_head, auxiliary", True,
        "False: the component compares nothing across the batch, so its gathered scope is its batch scope"),
    "feature_requests": OptionalAttribute(
        "objective components", (), "encoder features the component needs switched on (image:<name>, text:<name>)"),
    "columns": OptionalAttribute(
        "task result", MappingProxyType({}), "the result's columns, each with its direction and description"),
    "samples": OptionalAttribute(
        "task result", MappingProxyType({}), "per-test-case outputs of the result, by column"),
}


def declared(obj: Any, name: str) -> Any:
    """``obj``'s optional attribute ``name`` (a row of :data:`OPTIONAL_ATTRIBUTES`), or its default."""
    try:
        default = OPTIONAL_ATTRIBUTES[name].default
    except KeyError:
        raise KeyError(f"'{name}' is not an optional attribute: add it to OPTIONAL_ATTRIBUTES with its meaning "
                       "and default, or read it directly if every component has it") from None
    return getattr(obj, name, default)
