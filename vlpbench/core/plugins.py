"""Plugin discovery: the built-in plugin plus every ``vlpbench`` entry point, via pluggy.

Loading survives a broken plugin: a plugin that fails to import or to register yields one
warning naming the plugin and the reason, and the rest keeps working.
``VLPBENCH_STRICT_PLUGINS=1`` (or ``strict=True``) turns that into a :class:`PluginError`.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Iterable

import pluggy

from vlpbench import __version__

from vlpbench.core import builtin, hookspecs
from vlpbench.core.errors import PluginError, did_you_mean
from vlpbench.core.registry import BUILTIN_ORIGIN, Registrar, Registry


@dataclass
class PluginRecord:
    """What `vlpbench plugins` shows for one plugin."""

    name: str
    version: str | None
    distribution: str | None
    status: str  # "ok" or "failed"
    reason: str = ""
    components: list[tuple[str, str]] = field(default_factory=list)  # (kind, name)


@dataclass
class LoadedPlugins:
    registry: Registry
    plugins: list[PluginRecord]
    manager: pluggy.PluginManager

    def versions(self) -> dict[str, str | None]:
        """Plugin name → version, for provenance and stale-run detection."""
        return {p.name: p.version for p in self.plugins if p.status == "ok"}


def strict_from_env() -> bool:
    return os.environ.get("VLPBENCH_STRICT_PLUGINS", "").strip().lower() in {"1", "true", "yes", "on"}


def _new_manager() -> pluggy.PluginManager:
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    return manager


def _call_register(manager: pluggy.PluginManager, plugin: Any, registrar: Registrar) -> None:
    """Call one plugin's ``vlpbench_register`` (only that plugin's, so failures stay isolated)."""
    caller = manager.subset_hook_caller(
        "vlpbench_register", remove_plugins=[p for p in manager.get_plugins() if p is not plugin]
    )
    caller(registrar=registrar)


def modules_from_env() -> list[metadata.EntryPoint]:
    """Plugin modules named in ``VLPBENCH_PLUGIN_MODULES`` (``name=module,...``), loaded as if installed.

    For developing a plugin without installing it, and for tests: child processes (the two-process
    checks of check-plugin) inherit the variable and so see the same plugins.
    """
    entries = []
    for item in os.environ.get("VLPBENCH_PLUGIN_MODULES", "").split(","):
        name, _, module = item.strip().partition("=")
        if name and module:
            entries.append(metadata.EntryPoint(name=name, value=module, group=hookspecs.ENTRY_POINT_GROUP))
    return entries


def load_plugins(
    entry_points: Iterable[metadata.EntryPoint] | None = None,
    strict: bool | None = None,
) -> LoadedPlugins:
    """Build the registry from the built-in plugin and the installed (or given) entry points."""
    strict = strict_from_env() if strict is None else strict
    manager = _new_manager()
    registry = Registry()
    records: list[PluginRecord] = []

    manager.register(builtin, name=BUILTIN_ORIGIN)
    registrar = Registrar(registry, BUILTIN_ORIGIN, __version__, "vlpbench")
    _call_register(manager, builtin, registrar)
    records.append(
        PluginRecord(BUILTIN_ORIGIN, __version__, "vlpbench", "ok",
                     components=[(e.kind, e.name) for e in registrar.added])
    )

    if entry_points is None:
        entry_points = [*metadata.entry_points(group=hookspecs.ENTRY_POINT_GROUP), *modules_from_env()]
    for ep in sorted(entry_points, key=lambda e: e.name):
        dist = getattr(ep, "dist", None)
        record = PluginRecord(ep.name, dist.version if dist else None, dist.name if dist else None, "ok")
        records.append(record)
        plugin = None
        try:
            plugin = ep.load()
            manager.register(plugin, name=ep.name)  # validates hook signatures against the specs
            _check_pending(manager, plugin)  # a misspelt hook name is an error, not a plugin with nothing in it
            registrar = Registrar(registry, ep.name, record.version, record.distribution)
            _call_register(manager, plugin, registrar)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # a broken plugin (even one calling sys.exit()) must not take the others down
            if plugin is not None and manager.is_registered(plugin):
                manager.unregister(name=ep.name)
            record.status = "failed"
            record.reason = " ".join(f"{type(exc).__name__}: {exc}".split())  # one line, one paragraph
            message = (
                f"vlpbench plugin '{ep.name}' ({ep.value}) was skipped: {record.reason}. The other "
                "plugins keep working; fix or uninstall it (set VLPBENCH_STRICT_PLUGINS=1 to make this fatal)."
            )
            if strict:
                raise PluginError(message) from exc
            warnings.warn(message, stacklevel=2)
    for record in records:  # after every plugin: a name its owner took back is no longer the intruder's
        record.components = [(e.kind, e.name) for e in registry.all_entries() if e.origin == record.name]
    if strict and registry.problems:
        raise PluginError(" ".join(registry.problems))
    return LoadedPlugins(registry, records, manager)


def _check_pending(manager: pluggy.PluginManager, plugin: Any) -> None:
    """pluggy's ``check_pending()`` for ``plugin`` alone: every ``@hookimpl`` it has must match a hook
    spec (``vlpbench_register``); otherwise a typo silently registers nothing."""
    for name, caller in vars(manager.hook).items():
        if caller.spec is None and any(impl.plugin is plugin for impl in caller.get_hookimpls()):
            known = [n for n, c in vars(manager.hook).items() if c.spec is not None]

            raise pluggy.PluginValidationError(
                plugin, f"unknown hook '{name}'{did_you_mean(name, known)} (vlpbench's hooks: {', '.join(known)})")
    manager.check_pending()


_LOADED: LoadedPlugins | None = None


def get_plugins() -> LoadedPlugins:
    """The process-wide plugin set (loaded once)."""
    global _LOADED
    if _LOADED is None:
        _LOADED = load_plugins()
    return _LOADED


def get_registry() -> Registry:
    return get_plugins().registry


def reset() -> None:
    """Forget the loaded plugins (tests; after installing a plugin in-process)."""
    global _LOADED
    _LOADED = None
