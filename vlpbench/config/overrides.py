"""Dotted-path overrides (``objective.positive_miner: {...}``) applied to plain config dicts."""

from __future__ import annotations

import copy
from typing import Any

from vlpbench.core.errors import ConfigError


def split_path(path: str) -> tuple[str | int, ...]:
    """``"objective.local_heads.0.weight"`` → ``("objective", "local_heads", 0, "weight")``."""
    return tuple(int(p) if p.isdigit() else p for p in path.split("."))


def apply_override(config: dict[str, Any], path: str, value: Any, source: str) -> None:
    """Set ``path`` in ``config`` to a copy of ``value`` (replacing what was there)."""
    parts = split_path(path)
    node: Any = config
    for depth, part in enumerate(parts[:-1]):
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                raise ConfigError(
                    f"{source}: override '{path}' indexes item {part} of "
                    f"'{'.'.join(map(str, parts[:depth])) or 'the config'}', which has no such item."
                )
            node = node[part]
        else:
            if not isinstance(node, dict):
                raise ConfigError(f"{source}: override '{path}' goes through '{part}', which is not a mapping.")
            node = node.setdefault(part, {})
    last = parts[-1]
    if isinstance(last, int):
        if not isinstance(node, list) or last >= len(node):
            raise ConfigError(f"{source}: override '{path}' indexes a list item that does not exist.")
        node[last] = copy.deepcopy(value)
    else:
        if not isinstance(node, dict):
            raise ConfigError(f"{source}: override '{path}' sets a key inside something that is not a mapping.")
        node[last] = copy.deepcopy(value)
