"""Every identity vlpbench computes, in one place: a run's (:func:`run_hash`), a variant's
configuration (:func:`configuration_hash`: the run's without the seed), a run's pretraining
(:func:`pretrain_identity`: what pretraining reuse compares), an evaluation of an outside checkpoint
(:func:`evaluation_identity`) and a task protocol's (:func:`protocol_hash`), all hashed by
:func:`canonical_hash`.

What enters a run's identity: the resolved config, minus what cannot change the run.

Negative scopes (``objective.negative_scope`` and each component's ``scope``) decide what is
compared across the processes of a multi-process run; on one process ``local`` and ``gathered``
are the same computation. So a single-process run's identity leaves them out (runs made before
the setting existed keep their identity), and a multi-process run's identity includes them and
the number of processes, whose results differ from a single process's by design.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from typing import Any

from vlpbench.config.floor import floor_identity
from vlpbench.core.capabilities import declared
from vlpbench.core.errors import RegistryError
from vlpbench.core.kinds import scoped_slots
from vlpbench.core.plugins import get_registry


def canonical_hash(payload: Any, compact: bool = True) -> str:
    """SHA-256 of ``payload`` as sorted-key JSON (non-JSON values as ``str``). ``compact=False`` is the
    spacing protocol hashes were first made with (their values must not change)."""
    separators = (",", ":") if compact else None
    text = json.dumps(payload, sort_keys=True, separators=separators, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


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
        resolved = floor_identity(resolved)
    if world_size > 1:
        return {**resolved, "world_size": world_size}
    config = copy.deepcopy(resolved)
    objective = config.get("objective", {})
    objective.pop("negative_scope", None)
    for _, slot in scoped_slots():  # the miner, the weightings, heads and auxiliaries (see vlpbench.core.kinds)
        for spec in slot.specs(objective):
            if isinstance(spec, dict):
                spec.pop("scope", None)
    return config


def _identity_payload(config: dict[str, Any], data_versions: dict[str, Any] | None, world_size: int,
                      evaluation: str) -> dict[str, Any]:
    payload: dict[str, Any] = {"config": identity_config(config, world_size), "data_versions": data_versions or {}}
    if evaluation != "test":
        payload["evaluation"] = evaluation
    return payload


def configuration_hash(config: dict[str, Any], data_versions: dict[str, Any] | None, world_size: int = 1,
                       evaluation: str = "test") -> str:
    """A variant's configuration identity: what its run identity hashes, *without the seed*.

    Two runs of one variant belong in the same leaderboard row only when this hash is equal; a run
    whose hash differs from the variant's current one was made under an earlier configuration (an
    edited ``epochs``, ``lr``, task list, …) and is superseded, never pooled as another seed.
    """
    return canonical_hash(_identity_payload(config, data_versions, world_size, evaluation))


def run_hash(config: dict[str, Any], seed: int, data_versions: dict[str, Any] | None, world_size: int = 1,
             evaluation: str = "test") -> str:
    """A run's identity: its configuration identity and its seed (a sweep trial's also says that it is
    scored on the validation split)."""
    return canonical_hash({**_identity_payload(config, data_versions, world_size, evaluation), "seed": seed})


def pretrain_identity(config: dict[str, Any], seed: int, data_versions: dict[str, str], world_size: int = 1) -> str:
    """Hash of what pretraining depends on: the resolved config without ``tasks`` and without the
    dataset's ``downstream_only_params`` (e.g. SynthCXR's test split size), the seed and the
    pretraining dataset's protocol version."""
    config = identity_config(config, world_size)
    data = dict(config.get("data", {}))
    for key in _downstream_only_params(str(data.get("name"))):
        data.pop(key, None)
    pretraining = {k: v for k, v in config.items() if k not in ("tasks", "data")}  # world_size stays in
    return canonical_hash({"config": pretraining, "data": data, "seed": seed,
                           "data_version": data_versions.get(str(data.get("name")))})


def _downstream_only_params(dataset: str) -> frozenset[str]:
    try:
        return frozenset(declared(get_registry().get("dataset", dataset).load(), "downstream_only_params"))
    except RegistryError:
        return frozenset()


def evaluation_identity(source: dict[str, Any], tasks: Any, data: Any, data_versions: dict[str, Any]) -> str:
    """``vlpbench eval``'s identity: the checkpoint (without its path) and the protocol it is scored under."""
    return canonical_hash({"source": {k: v for k, v in source.items() if k != "path"}, "tasks": tasks,
                           "data": data, "data_versions": data_versions})


def protocol_hash(protocol: dict[str, Any]) -> str:
    """A task protocol's identity (16 hex digits), as the board's protocol split compares them."""
    return canonical_hash(protocol, compact=False)[:16]
