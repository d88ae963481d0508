"""Where runs execute: the ``launcher`` component kind.

``vlpbench run --launcher NAME`` and ``vlpbench sweep --launcher NAME`` resolve ``NAME`` in the
registry like any component: ``local`` (every run in this process, :class:`~vlpbench.engine.runner.
LocalLauncher`), ``slurm`` (:class:`~vlpbench.launchers.slurm.SlurmLauncher`), or a plugin's. A
launcher is a class built without arguments with ``launch(experiment, results_root, **options)``
(options: ``rerun_stale``), and, if it can run sweeps, ``launch_sweep(plan, results_root,
resume=...)``; it reads its settings from the experiment itself (e.g. the file's ``launcher:``
section). ``local`` is run in place by the CLI (progress, the printed board, several processes
under torchrun), so :func:`launcher` is only asked for the others.
"""

from __future__ import annotations

from typing import Any

from vlpbench.core.errors import ConfigError, RegistryError
from vlpbench.core.kinds import Launcher, SweepLauncher, missing_members
from vlpbench.core.plugins import get_registry


def launcher(name: str, sweep: bool = False) -> Any:
    """The launcher component ``name``, built; a clear error for an unknown name or a launcher that
    cannot do what is asked (``sweep``)."""
    try:
        entry = get_registry().get("launcher", name)
    except RegistryError as exc:
        raise ConfigError(f"--launcher {name}: {exc}") from None
    instance = entry.load()()
    needed = "launch_sweep" if sweep else "launch"
    if missing_members(SweepLauncher if sweep else Launcher, instance):  # the kind table's launcher interfaces
        what = "run sweeps" if sweep else "launch runs"
        raise ConfigError(f"--launcher {name}: the launcher '{name}' (plugin '{entry.origin}') cannot {what}: it has no "
                          f"{needed}() method. Use --launcher local or slurm, or ask its author.")
    return instance
