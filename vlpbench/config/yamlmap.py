"""YAML loading that remembers the line of every key, so errors can point at it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from vlpbench.errors import ConfigError

Path_ = tuple[str | int, ...]


def _walk(node: yaml.Node, prefix: Path_, lines: dict[Path_, int], source: str) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ConfigError(
                    f"{source}, line {line}: key '{'.'.join(map(str, prefix + (key,)))}' appears twice "
                    f"(first on line {seen[key]}). Keep one of them."
                )
            seen[key] = line
            lines[prefix + (key,)] = line
            _walk(value_node, prefix + (key,), lines, source)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[prefix + (index,)] = item.start_mark.line + 1
            _walk(item, prefix + (index,), lines, source)


def load_yaml_with_lines(path: Path) -> tuple[Any, dict[Path_, int]]:
    """Parse ``path``; return the data and a map from key path to 1-based line number."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"experiment file '{path}' does not exist. Check the path (experiments live in experiments/).") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"experiment file '{path}' cannot be read: {exc}.") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(
            f"{path}{where}: this is not valid YAML ({problem}). Check the indentation and the "
            "quoting around that place."
        ) from None
    lines: dict[Path_, int] = {}
    if node is not None:
        _walk(node, (), lines, str(path))
    return data, lines


def nearest_line(lines: dict[Path_, int], loc: Path_) -> int | None:
    """The line of ``loc`` or of its closest ancestor that has one."""
    for cut in range(len(loc), -1, -1):
        if loc[:cut] in lines:
            return lines[loc[:cut]]
    return None
