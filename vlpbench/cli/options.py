"""Argument types and shared options of the commands (``--set``, seeds, results folders, experiment names)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Callable

from vlpbench.core.errors import ConfigError


def seed_list(text: str) -> list[int]:
    try:
        return [int(s) for s in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds takes integers such as '0' or '0,1,2', got '{text}'") from None


def results_folder(text: str) -> Path:
    """``--results``: a folder (made when missing); a file there is refused with the fix."""
    root = Path(text)
    if root.exists() and not root.is_dir():
        raise ConfigError(f"--results '{root}' is a file, not a folder; give a folder (default: results/).")
    return root


def bounded_int(name: str, low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer in [low, high] (sizes that would exhaust memory are refused)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} takes an integer, got '{text}'") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{name} takes an integer from {low:,} to {high:,}, got {value:,}")
        return value
    return parse


def set_values(pairs: list[str] | None, example: str = "valid_size=5000") -> dict[str, object]:
    """``--set KEY=VALUE`` pairs; values are YAML (``1e-4`` is a number, ``{name: oracle}`` a mapping)."""
    import yaml

    values: dict[str, object] = {}
    for pair in pairs or []:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set takes KEY=VALUE (e.g. --set {example}), got '{pair}'.")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {pair}: the value is not valid YAML ({str(exc).splitlines()[0]}); quote "
                              f"it for the shell, e.g. --set '{key.strip()}={{name: oracle}}'.") from None
        if isinstance(value, str) and re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+", value.strip()):
            value = float(value)  # YAML 1.1 reads 1e-4 as text; on a command line it means the number
        values[key.strip()] = value
    return values


def settings_of(args: argparse.Namespace) -> dict[str, object]:
    """The ``--set`` overrides of ``run``/``validate``/``sweep``, with ``--device`` as ``pretrain.device``."""
    settings = set_values(getattr(args, "set", None), example="pretrain.lr=1e-4")
    if getattr(args, "device", None):
        if "pretrain.device" in settings and settings["pretrain.device"] != args.device:
            raise ConfigError(f"--device {args.device} and --set pretrain.device={settings['pretrain.device']} "
                              "disagree; give one of them.")
        settings["pretrain.device"] = args.device
    return settings


def add_settings(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="override a config key of every variant by dotted path, as variants do (repeatable), "
                             "e.g. --set pretrain.lr=1e-4; validated like the file, recorded in each run's "
                             "config.yaml, part of the runs' identity")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"],
                        help="where pretraining and evaluation run: --set pretrain.device=DEVICE")


def experiment_file(text: str) -> Path:
    """An experiment argument: a file, or the name of an experiment vlpbench ships (``quickstart``)."""
    from vlpbench.config.shipped import resolve_experiment

    return resolve_experiment(text)
