"""Every component kind of vlpbench, and the lazy name → class registry behind them.

A registry entry maps a namespaced name (``infonce``, ``fane.adaptive_miner``) to a
``"module:attr"`` string. Nothing is imported until a component is built or its parameters are
validated, so listing components (``vlpbench plugins``) never imports torch.

Component classes follow one convention: a nested pydantic model ``Params`` (``extra="forbid"``)
declares the parameters, and the constructor is ``Component(params, context)``. Kinds whose
targets are not classes (``preset``) resolve to plain data.

Loading an entry also validates what the component declares about itself against its kind's
metadata model (:mod:`vlpbench.core.metadata`): a plugin whose component declares, say, ``requires``
of the wrong type is refused there, with one paragraph naming the plugin, the component and the
attribute, before anything reads it.
"""

from __future__ import annotations

import importlib
import re
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable

from vlpbench.core.errors import RegistryError, did_you_mean
from vlpbench.core.kinds import KIND_TABLE, kind_of

if TYPE_CHECKING:  # pragma: no cover  (the models import pydantic: Kind.metadata_model imports them on use)
    from vlpbench.core.metadata import ComponentMetadata

#: Every component kind, with what it is for (derived from :data:`vlpbench.core.kinds.KIND_TABLE`,
#: the one place that declares them).
KINDS: dict[str, str] = {k.name: k.description for k in KIND_TABLE}

_NAME = re.compile(r"^[a-z][a-z0-9_\-]*(\.[a-z0-9][a-z0-9_\-]*)*$")

BUILTIN_ORIGIN = "vlpbench"


@dataclass(frozen=True)
class Entry:
    """One registered component: where it lives and which plugin (version, distribution) registered it."""

    kind: str
    name: str
    target: str
    origin: str
    summary: str = ""
    origin_version: str | None = None
    distribution: str | None = None

    def load(self) -> Any:
        """Import and return the target (a class, or data for presets), its metadata validated."""
        target = self._import()
        self.metadata(target)
        return target

    def metadata(self, target: Any = None, loaded: bool = True) -> ComponentMetadata:
        """The component's validated metadata, of its kind's model (:mod:`vlpbench.core.metadata`); imports
        the component unless ``target`` is given. ``loaded=False``: the registration's part only (name,
        kind, description, target, plugin, distribution), without importing the component."""
        model = kind_of(self.kind).metadata_model()
        if loaded and target is None:
            target = self._import()
        return model.of(self, target, loaded=loaded)

    def _import(self) -> Any:
        module_name, _, attr = self.target.partition(":")
        try:
            module = importlib.import_module(module_name)
            obj: Any = module
            for part in attr.split("."):
                obj = getattr(obj, part)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # reported with the component and the plugin it comes from (sys.exit too)
            raise RegistryError(
                f"{self.kind} '{self.name}' (from plugin '{self.origin}') cannot be imported from "
                f"'{self.target}': {type(exc).__name__}: {exc}. Reinstall or fix that plugin, or "
                f"use another {self.kind}."
            ) from exc
        return obj

    def params_model(self) -> Any:
        """The pydantic model of the component's parameters (None if it takes none)."""
        return self.metadata().params


@dataclass
class Registry:
    """All entries by kind. Built by :func:`vlpbench.core.plugins.load_registry`."""

    entries: dict[str, dict[str, Entry]] = field(default_factory=lambda: {k: {} for k in KINDS})
    #: Warnings raised while registering (refused duplicates), for `vlpbench plugins`.
    problems: list[str] = field(default_factory=list)
    #: (kind, name) registered by two plugins that do not own the name: refused for both, in any order.
    contested: set[tuple[str, str]] = field(default_factory=set)

    def add(self, entry: Entry) -> bool:
        """Add ``entry``; refuse a taken name (error among built-ins, warning otherwise)."""
        if entry.kind not in KINDS:
            raise RegistryError(
                f"plugin '{entry.origin}' registers '{entry.name}' under unknown kind "
                f"'{entry.kind}'{did_you_mean(entry.kind, list(KINDS))} Valid kinds: {', '.join(KINDS)}."
            )
        if not _NAME.match(entry.name):
            raise RegistryError(
                f"plugin '{entry.origin}' registers the {entry.kind} name '{entry.name}', which is not "
                "a valid name: use lowercase dotted names such as 'myplugin.my_loss'."
            )
        if ":" not in entry.target:
            raise RegistryError(
                f"plugin '{entry.origin}' registers {entry.kind} '{entry.name}' with target "
                f"'{entry.target}': a target is a 'package.module:attribute' string."
            )
        if not isinstance(entry.summary, str):
            raise RegistryError(
                f"plugin '{entry.origin}' registers {entry.kind} '{entry.name}' with summary {entry.summary!r}: "
                "a summary is one line of text (a str) saying what the component is"
            )
        taken = self.entries[entry.kind].get(entry.name)
        if taken is not None and taken.origin == BUILTIN_ORIGIN and entry.origin == BUILTIN_ORIGIN:
            raise RuntimeError(f"built-in {entry.kind} '{entry.name}' is registered twice (a bug)")
        if (entry.kind, entry.name) in self.contested and not _owns(entry, entry.name):
            self._refuse(entry, "the name is contested by plugins that do not own it")
            return False
        if taken is not None:
            # The owner of a name keeps it whatever the loading order: the built-in plugin, else the plugin
            # whose name is the name's prefix ('fane' owns 'fane.*'). Between two non-owners neither keeps it.
            if _owns(entry, entry.name) and not _owns(taken, taken.name):
                self.entries[entry.kind][entry.name] = entry
                self._refuse(taken, f"the name belongs to plugin '{entry.origin}' ({entry.target})")
                return True
            if not _owns(taken, taken.name):
                del self.entries[entry.kind][entry.name]
                self.contested.add((entry.kind, entry.name))
                self._refuse(taken, f"plugin '{entry.origin}' ({entry.target}) registers it too")
            self._refuse(entry, f"the name is already taken by plugin '{taken.origin}' ({taken.target})")
            return False
        self.entries[entry.kind][entry.name] = entry
        return True

    def _refuse(self, entry: Entry, why: str) -> None:
        message = (
            f"{entry.kind} '{entry.name}' from plugin '{entry.origin}' ({entry.target}) was refused: {why}. "
            "Rename it in one of the plugins (plugins should prefix their names, e.g. 'myplugin.name')."
        )
        self.problems.append(message)
        warnings.warn(message, stacklevel=3)

    def get(self, kind: str, name: str) -> Entry:
        """The entry for ``name``; an unknown name lists close matches and all names of the kind."""
        if kind not in KINDS:
            raise RegistryError(f"unknown component kind '{kind}'{did_you_mean(kind, list(KINDS))}")
        try:
            return self.entries[kind][name]
        except KeyError:
            names = sorted(self.entries[kind])
            raise RegistryError(
                f"unknown {kind} '{name}'{did_you_mean(name, names)} Available {kind} names: "
                f"{', '.join(names) or '(none)'}. `vlpbench plugins` lists every component and the "
                "plugin it comes from; install the plugin that provides it or correct the name."
            ) from None

    def names(self, kind: str) -> list[str]:
        return sorted(self.entries[kind])

    def all_entries(self) -> list[Entry]:
        return [e for kind in KINDS for e in sorted(self.entries[kind].values(), key=lambda e: e.name)]


def _owns(entry: Entry, name: str) -> bool:
    """The built-in plugin owns its names; a plugin owns the names prefixed with its own name."""
    return entry.origin == BUILTIN_ORIGIN or name.split(".", 1)[0] == entry.origin


class Registrar:
    """What a plugin's ``vlpbench_register`` hook receives: registers under the plugin's name."""

    def __init__(self, registry: Registry, origin: str, version: str | None = None,
                 distribution: str | None = None) -> None:
        self._registry = registry
        self.origin = origin
        self.version = version
        self.distribution = distribution
        self.added: list[Entry] = []

    def add(self, kind: str, name: str, target: str, summary: str = "") -> None:
        """Register ``target`` ("package.module:Class") as component ``name`` of ``kind``."""
        entry = Entry(kind=kind, name=name, target=target, origin=self.origin, summary=summary,
                      origin_version=self.version, distribution=self.distribution)
        if self._registry.add(entry):
            self.added.append(entry)

    def add_all(self, components: Iterable[tuple[str, str, str, str]]) -> None:
        """Register every ``(kind, name, target, summary)`` of a plugin's component table."""
        for kind, name, target, summary in components:
            self.add(kind, name, target, summary)
