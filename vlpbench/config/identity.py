"""What enters a run's identity (its hash): the resolved config, minus what cannot change the run.

Negative scopes (``objective.negative_scope`` and each component's ``scope``) decide what is
compared across the processes of a multi-process run; on one process ``local`` and ``gathered``
are the same computation. So a single-process run's identity leaves them out (runs made before
the setting existed keep their identity), and a multi-process run's identity includes them and
the number of processes, whose results differ from a single process's by design.
"""

from __future__ import annotations

import copy
import os
from typing import Any

SCOPED_LISTS = ("negative_weighting", "local_heads", "auxiliaries")


def world_size_from_environment() -> int:
    """The number of processes this run is started with (torchrun and Slurm set WORLD_SIZE)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def identity_config(resolved: dict[str, Any], world_size: int) -> dict[str, Any]:
    """The resolved config as it is hashed for a run on ``world_size`` processes (a floor run's,
    see :mod:`vlpbench.config.floor`, without the settings of the pretraining it does not do)."""
    if resolved.get("floor"):
        from vlpbench.config.floor import floor_identity

        resolved = floor_identity(resolved)
    if world_size > 1:
        return {**resolved, "world_size": world_size}
    config = copy.deepcopy(resolved)
    objective = config.get("objective", {})
    objective.pop("negative_scope", None)
    miner = objective.get("positive_miner")
    if isinstance(miner, dict):
        miner.pop("scope", None)
    for key in SCOPED_LISTS:
        for spec in objective.get(key, []) or []:
            if isinstance(spec, dict):
                spec.pop("scope", None)
    return config


def configuration_hash(config: dict[str, Any], data_versions: dict[str, Any] | None, world_size: int = 1,
                       evaluation: str = "test") -> str:
    """A variant's configuration identity: what its run identity hashes, *without the seed*.

    Two runs of one variant belong in the same leaderboard row only when this hash is equal; a run
    whose hash differs from the variant's current one was made under an earlier configuration (an
    edited ``epochs``, ``lr``, task list, …) and is superseded, never pooled as another seed.
    """
    from vlpbench.config.loader import canonical_hash

    payload: dict[str, Any] = {"config": identity_config(config, world_size), "data_versions": data_versions or {}}
    if evaluation != "test":
        payload["evaluation"] = evaluation
    return canonical_hash(payload)
