"""YAML loading that remembers the line of every key, so errors can point at it, and that is bounded.

Experiment files and the ``config.yaml`` of run folders may come from elsewhere, so the loader
refuses, with one paragraph, what would exhaust memory or recursion before anything is built: a
file over :data:`MAX_BYTES`, nesting deeper than :data:`MAX_DEPTH`, more than :data:`MAX_ALIASES`
aliases, or a document whose aliases expand to more than :data:`MAX_NODES` nodes (a "billion laughs"
file is a few hundred bytes). The depth and alias checks read PyYAML's event stream, which is not
recursive, so they run before the (recursive) composer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from vlpbench.core.errors import ConfigError

Path_ = tuple[str | int, ...]

MAX_BYTES = 4 << 20
MAX_DEPTH = 64
MAX_ALIASES = 200
MAX_NODES = 200_000


def check_bounds(text: str, source: str) -> None:
    """Refuse a YAML text that is too large, too deep or has too many aliases (:class:`ConfigError`)."""
    if len(text) > MAX_BYTES:
        raise ConfigError(f"{source}: the file has {len(text):,} characters, more than the {MAX_BYTES:,} a vlpbench "
                          "YAML file may have. Experiment files are small; check that this is the right file.")
    depth = aliases = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                raise ConfigError(f"{source}, line {event.start_mark.line + 1}: the YAML nests deeper than {MAX_DEPTH} "
                                  "levels. Experiment files need a handful; flatten the structure.")
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1
        elif isinstance(event, yaml.AliasEvent):
            aliases += 1
            if aliases > MAX_ALIASES:
                raise ConfigError(f"{source}, line {event.start_mark.line + 1}: more than {MAX_ALIASES} YAML aliases "
                                  "(*name). Repeat fewer values by alias, or write them out.")


def _expanded_size(node: yaml.Node, source: str) -> None:
    """Refuse a composed document whose aliases expand to more than :data:`MAX_NODES` nodes."""
    sizes: dict[int, int] = {}

    def size(item: yaml.Node) -> int:
        if id(item) in sizes:
            return sizes[id(item)]
        sizes[id(item)] = 1  # a recursive alias counts once (and cannot loop)
        total = 1
        if isinstance(item, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in item.value)
        elif isinstance(item, yaml.SequenceNode):
            total += sum(size(v) for v in item.value)
        sizes[id(item)] = total
        return total

    if size(node) > MAX_NODES:
        raise ConfigError(f"{source}: its aliases expand to more than {MAX_NODES:,} values (an alias bomb?). "
                          "Write the values out or use fewer nested aliases.")


def _yaml_error(source: str, exc: yaml.YAMLError) -> ConfigError:
    mark = getattr(exc, "problem_mark", None)
    where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(exc, "problem", None) or str(exc)
    return ConfigError(f"{source}{where}: this is not valid YAML ({problem}). Check the indentation and the "
                       "quoting around that place.")


def load_bounded(text: str, source: str) -> Any:
    """``yaml.safe_load(text)`` within the bounds above; any problem is a :class:`ConfigError` naming ``source``."""
    try:
        check_bounds(text, source)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is not None:
            _expanded_size(node, source)
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise _yaml_error(source, exc) from None
    except RecursionError:
        raise ConfigError(f"{source}: its aliases nest too deeply to expand. Write the values out.") from None


def _walk(node: yaml.Node, prefix: Path_, lines: dict[Path_, int], source: str,
          seen_nodes: set[int] | None = None) -> None:
    seen_nodes = set() if seen_nodes is None else seen_nodes
    if id(node) in seen_nodes:  # an alias: its lines were recorded where its anchor is (no expansion)
        return
    seen_nodes.add(id(node))
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
            _walk(value_node, prefix + (key,), lines, source, seen_nodes)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[prefix + (index,)] = item.start_mark.line + 1
            _walk(item, prefix + (index,), lines, source, seen_nodes)


def load_yaml_with_lines(path: Path) -> tuple[Any, dict[Path_, int]]:
    """Parse ``path``; return the data and a map from key path to 1-based line number."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"experiment file '{path}' does not exist. Check the path (experiments live in experiments/).") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"experiment file '{path}' cannot be read: {exc}.") from None
    try:
        check_bounds(text, str(path))
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is not None:
            _expanded_size(node, str(path))
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise _yaml_error(str(path), exc) from None
    except RecursionError:
        raise ConfigError(f"{path}: its aliases nest too deeply to expand. Write the values out.") from None
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
