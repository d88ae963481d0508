"""The metadata model of each component kind: what a component declares about itself, validated.

Like mteb's ``TaskMetadata``, every component has one pydantic model instance describing it. Its
common part (:class:`ComponentMetadata`) is what the registration says — name, kind, description,
target, the plugin and the distribution that registered it — plus the paper and the official code
of the method where the component declares them (class attributes ``reference`` and
``official_code``). Each kind's model adds the class attributes the engine and the board read by
convention, so that they are checked once, when the component is loaded, instead of being probed
with ``getattr`` wherever they are used:

=========================  ===============================================================
model                      declared fields (class attributes of the component)
=========================  ===============================================================
:class:`DatasetMetadata`    ``provides``, ``protocol_version``, ``downstream_only_params``
:class:`EncoderMetadata`    ``provides``, ``optional_features``
:class:`ObjectiveMetadata`  ``requires``, ``batch_negatives``, ``feature_requests``
:class:`TaskMetadata`       ``requires``, ``metric_version``
:class:`LauncherMetadata`   ``sweeps`` (derived: whether it has ``launch_sweep``)
:class:`PresetMetadata`     ``overrides`` (the preset itself)
=========================  ===============================================================

and every kind but ``preset``: ``Params`` (the pydantic parameter model, or none).
:data:`vlpbench.core.kinds.KIND_TABLE` names each kind's model; :meth:`Entry.metadata
<vlpbench.core.registry.Entry.metadata>` builds it. A declaration of the wrong type (``requires =
"data:labels"``, a string where a set is meant) is a :class:`~vlpbench.core.errors.RegistryError`
naming the plugin, the component, the attribute and the fix — one paragraph, no traceback.

This module imports pydantic; the kinds table names the models by name and imports this module
only when a model is needed, so ``vlpbench --help`` and ``vlpbench plugins`` do not import it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, Strict, StringConstraints, ValidationError

from vlpbench.core.errors import RegistryError
from vlpbench.core.kinds import SweepLauncher, missing_members

if TYPE_CHECKING:  # pragma: no cover
    from vlpbench.core.registry import Entry

__all__ = ["ComponentMetadata", "DatasetMetadata", "EncoderMetadata", "ObjectiveMetadata", "TaskMetadata",
           "LauncherMetadata", "PresetMetadata", "metadata_problem"]


def _sorted(names: frozenset[str]) -> list[str]:
    return sorted(names)


def _qualified(model: type | None) -> str | None:
    return None if model is None else f"{model.__module__}.{model.__qualname__}"


#: A set of names, written to JSON as a sorted list (a set's order changes from one process to the next).
Names = Annotated[frozenset[str], PlainSerializer(_sorted, return_type=list[str])]
Requirement = Annotated[str, StringConstraints(pattern=r"^(image|text|data):[A-Za-z0-9_\-]+$")]
FeatureRequest = Annotated[str, StringConstraints(pattern=r"^(image|text):[A-Za-z0-9_\-]+$")]
Requirements = Annotated[frozenset[Requirement], PlainSerializer(_sorted, return_type=list[str])]
FeatureRequests = Annotated[frozenset[FeatureRequest], PlainSerializer(_sorted, return_type=list[str])]
ParamsModel = Annotated[type[BaseModel] | None, PlainSerializer(_qualified, return_type=str | None)]
Version = Annotated[str, Strict()]


def _example(text: str) -> dict[str, Any]:
    return {"example": text}


class ComponentMetadata(BaseModel):
    """What every component declares: its registration, and the method's paper and official code."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    #: The fields the registration gives (the rest are read from the component's class attributes).
    REGISTERED: ClassVar[tuple[str, ...]] = ("name", "kind", "description", "target", "origin", "origin_version",
                                            "distribution")

    name: str = Field(description="the registered name (prefixed with the plugin's name)")
    kind: str = Field(description="the component kind it is registered under")
    description: str = Field("", description="one line on what it is (the summary it was registered with)")
    target: str = Field(description="the 'package.module:attribute' it is imported from")
    origin: str = Field(description="the plugin that registered it ('vlpbench' for the built-ins)")
    origin_version: str | None = Field(None, description="that plugin's version")
    distribution: str | None = Field(None, description="the installed distribution that provides that plugin")
    reference: str | None = Field(None, description="a string: the paper that defines the method (arXiv id, DOI or URL)",
                                  json_schema_extra=_example('"arXiv:2511.12215"'))
    official_code: str | None = Field(None, description="a string: the URL of the method's official code",
                                      json_schema_extra=_example('"https://github.com/Aventador8/FaNe"'))
    params: ParamsModel = Field(None, alias="Params",
                                description="a pydantic model (a BaseModel subclass) of its parameters, or None",
                                json_schema_extra=_example("a nested `class Params(BaseModel): ...`"))

    @classmethod
    def declared_fields(cls) -> dict[str, str]:
        """Field name → the class attribute it is read from (``params`` ← ``Params``)."""
        return {name: info.alias or name for name, info in cls.model_fields.items() if name not in cls.REGISTERED}

    @classmethod
    def declared(cls, target: Any) -> dict[str, Any]:
        """The values ``target`` (the loaded class) declares, by attribute name; absent ones keep their default."""
        return {attribute: getattr(target, attribute) for attribute in cls.declared_fields().values()
                if hasattr(target, attribute)}

    @classmethod
    def registration(cls, entry: Entry) -> dict[str, Any]:
        return {"name": entry.name, "kind": entry.kind, "description": entry.summary, "target": entry.target,
                "origin": entry.origin, "origin_version": entry.origin_version, "distribution": entry.distribution}

    @classmethod
    def of(cls, entry: Entry, target: Any = None, loaded: bool = True) -> ComponentMetadata:
        """The validated metadata of ``entry`` (``target``: its loaded class or data); ``loaded=False``:
        the registration's part only, as the common model, without importing the component."""
        model = cls if loaded else ComponentMetadata
        values = {**(cls.declared(target) if loaded else {}), **cls.registration(entry)}
        try:
            return model.model_validate(values)
        except ValidationError as exc:
            raise RegistryError(metadata_problem(entry, model, exc, values)) from None

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (sets as sorted lists, the parameter model by its qualified name)."""
        return self.model_dump(mode="json", by_alias=False)

    def declarations(self) -> dict[str, Any]:
        """The declared fields whose value is not the default (what ``describe`` lists)."""
        data = self.as_dict()
        return {name: data[name] for name, info in type(self).model_fields.items()
                if name not in self.REGISTERED and name != "params" and getattr(self, name) != info.default}


class DatasetMetadata(ComponentMetadata):
    """A data source: what it gives (checked against what losses and tasks require) and its protocol."""

    provides: Names = Field(frozenset(), description="a frozenset of what it gives (images, reports, sentences, "
                            "labels, masks, boxes, prompts)", json_schema_extra=_example('frozenset({"images", "labels"})'))
    protocol_version: Version | None = Field(None, description="a string naming the dataset version and recipe "
                                             "(part of every score's protocol)", json_schema_extra=_example('"mydata-1"'))
    downstream_only_params: Names = Field(frozenset(), description="a frozenset of parameter names that change only "
                                          "downstream splits (left out of the pretraining identity)",
                                          json_schema_extra=_example('frozenset({"test_size"})'))


class EncoderMetadata(ComponentMetadata):
    """An image or a text encoder: the features it gives and the optional ones components may request."""

    provides: Names = Field(frozenset(), description="a frozenset of the features it gives (global, patches, words, "
                            "sentences)", json_schema_extra=_example('frozenset({"global", "patches"})'))
    optional_features: Names = Field(frozenset(), description="a frozenset of the optional features it can switch on "
                                     "when requested (e.g. cls_attention)",
                                     json_schema_extra=_example('frozenset({"cls_attention"})'))


class ObjectiveMetadata(ComponentMetadata):
    """A term of the objective (global loss, miner, weighting, local head, auxiliary)."""

    requires: Requirements = Field(frozenset(), description="a frozenset of what it needs, each 'image:<feature>', "
                                   "'text:<feature>' or 'data:<field>'",
                                   json_schema_extra=_example('frozenset({"image:patches", "data:labels"})'))
    batch_negatives: Annotated[bool, Strict()] = Field(
        True, description="True or False: False when it compares nothing across the batch (the two-process check "
        "then skips the gathered scope)", json_schema_extra=_example("False"))
    feature_requests: FeatureRequests = Field(
        frozenset(), description="a frozenset of optional encoder features it asks for, each 'image:<name>' or "
        "'text:<name>' (an instance may set its own from its parameters)",
        json_schema_extra=_example('frozenset({"text:cls_attention"})'))


class TaskMetadata(ComponentMetadata):
    """A downstream task: what it needs and the version of its metric (shown on the board)."""

    requires: Requirements = Field(frozenset(), description="a frozenset of what it needs, each 'image:<feature>', "
                                   "'text:<feature>' or 'data:<field>'",
                                   json_schema_extra=_example('frozenset({"data:labels"})'))
    metric_version: Version | None = Field(None, description="a string: raise it whenever the metric's computation "
                                           "changes", json_schema_extra=_example('"1"'))


class LauncherMetadata(ComponentMetadata):
    """Where runs execute: whether it can also run sweeps."""

    sweeps: bool = Field(False, description="whether it has launch_sweep() (derived, not declared)")

    @classmethod
    def declared(cls, target: Any) -> dict[str, Any]:
        values = super().declared(target)
        values.pop("sweeps", None)
        return {**values, "sweeps": target is not None and not missing_members(SweepLauncher, target)}


class PresetMetadata(ComponentMetadata):
    """A method's objective as config overrides: the preset's data itself."""

    overrides: dict[str, Any] = Field(default_factory=dict, description="a dict of dotted config keys to values",
                                      json_schema_extra=_example('{"objective.positive_miner": {"name": "x"}}'))

    @classmethod
    def declared(cls, target: Any) -> dict[str, Any]:
        return {} if target is None else {"overrides": target}


def metadata_problem(entry: Entry, model: type[ComponentMetadata], exc: ValidationError, values: dict[str, Any]) -> str:
    """One paragraph: the component, its plugin, each invalid field with what it holds, what it should be, the fix."""
    by_key = {info.alias or name: (name, info) for name, info in model.model_fields.items()}
    problems, registered = [], False
    for error in exc.errors():
        key = str(error["loc"][0]) if error["loc"] else "?"
        name, info = by_key.get(key, (key, None))
        registered = registered or name in model.REGISTERED
        should = f"; it should be {info.description}" if info is not None and info.description else ""
        example = (info.json_schema_extra or {}).get("example") if info is not None and isinstance(
            info.json_schema_extra, dict) else None
        problems.append(f"`{key}` = {values.get(key)!r} is invalid ({error['msg']}){should}"
                        + (f", e.g. `{key} = {example}`" if example else ""))
    where = (f"the registration in plugin '{entry.origin}' (its vlpbench_register hook)" if registered
             else f"the class attribute(s) of {entry.target}")
    return (f"{entry.kind} '{entry.name}' from plugin '{entry.origin}' ({entry.target}) declares invalid metadata: "
            f"{'; '.join(dict.fromkeys(problems))}. Fix {where} (or ask the plugin's authors to), or uninstall the "
            f"plugin (the README's *Component kinds* section lists what each kind declares).")
