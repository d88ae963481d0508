"""The pluggy hook specifications every vlpbench plugin implements.

A plugin is a module (or object) exposed under the ``vlpbench`` entry-point group::

    [project.entry-points.vlpbench]
    myplugin = "myplugin.plugin"

whose ``vlpbench_register`` hook adds its components through the registrar it is given.
The built-in components register through the very same hook (see ``vlpbench.core.builtin``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from vlpbench.core.registry import Registrar

PROJECT = "vlpbench"
ENTRY_POINT_GROUP = "vlpbench"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def vlpbench_register(registrar: Registrar) -> None:
    """Register components: ``registrar.add(kind, name, "package.module:Class", summary)``.

    Use names prefixed by your plugin (``myplugin.my_loss``); a name that is already taken is
    refused with a warning naming both plugins. Keep this hook import-light: targets are
    strings and are imported only when a component is used.
    """


@hookspec
def vlpbench_reported_results() -> list[dict]:
    """Published numbers of the methods this plugin implements (optional hook).

    Each entry: ``method``, ``dataset`` (the registered dataset name the numbers were measured on,
    e.g. ``chexpert``), ``task`` (``linear_probe``, ``segmentation``, ``detection``, …), ``metric``,
    ``protocol`` (in words, e.g. "MGCA's linear probe"), ``values`` (label fraction → score ×100,
    e.g. ``{"1%": 89.7}``) and ``citation``. The leaderboard shows them, labelled as reported by the
    papers, only on boards with that task on that dataset — never beside SynthCXR numbers.
    """
