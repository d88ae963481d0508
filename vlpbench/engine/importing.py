"""Importing the image encoders of published checkpoints through named key maps (``vlpbench eval --format``).

The field publishes weights in several layouts: MGCA's and GLoRIA's PyTorch Lightning ``.ckpt``
files nest the model under ``state_dict`` with the image backbone's keys prefixed
(``img_encoder_q.model.*``, ``gloria.img_encoder.model.*``); BenchX's released weights are loaded
with a per-method ``pretrained_prefix``; timm files are plain state dicts. A *key map* says where
the state dict sits in the file (``unwrap``) and which prefix marks the image backbone; ``--prefix``
and ``--strip`` give one by hand, and formats without a fixed prefix (``lightning``, ``benchx``)
find it: the prefix under which the most keys match the backbone's names and shapes.

Loading is safe and loud:

- files are read with ``torch.load(weights_only=True)`` (or safetensors): tensors and plain data
  only. Lightning's hyper-parameter containers (``AttributeDict``) are read as plain mappings; any
  other object in the file is refused, naming it.
- a 3-channel first convolution is summed to the 1-channel input vlpbench feeds (as timm does);
- the result lists the backbone tensors that did not load and the checkpoint keys under the prefix
  that were not used; a load that leaves more than half of the backbone's parameters at their
  random initialisation is refused (:data:`MIN_LOADED`), since it would score a random network.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from vlpbench.core.errors import ConfigError, DataError
from vlpbench.engine.checkpoint import CheckpointError, load_checkpoint

#: The least fraction of the backbone's parameters (by count) a checkpoint must provide.
MIN_LOADED = 0.5


@dataclass(frozen=True)
class KeyMap:
    """Where the image backbone's weights sit in a checkpoint file."""

    unwrap: tuple[str, ...] = ("state_dict", "model")  # nested mappings tried in order
    prefixes: tuple[str, ...] | None = None  # candidate prefixes; None: find it
    strip: tuple[str, ...] = ("module.",)  # removed from the start of keys after the prefix
    doc: str = ""


KEY_MAPS: dict[str, KeyMap] = {
    "timm": KeyMap(prefixes=("",), doc="a timm state dict (optionally under 'state_dict' or 'model')"),
    "lightning": KeyMap(unwrap=("state_dict",), doc="a PyTorch Lightning .ckpt; the backbone prefix is found"),
    "mgca": KeyMap(unwrap=("state_dict",), prefixes=("img_encoder_q.model.",),
                   doc="MGCA's Lightning checkpoint: img_encoder_q.model.*"),
    "gloria": KeyMap(unwrap=("state_dict",), prefixes=("gloria.img_encoder.model.", "img_encoder.model."),
                     doc="GLoRIA's Lightning checkpoint: gloria.img_encoder.model.*"),
    "benchx": KeyMap(unwrap=("state_dict", "model"),
                     doc="BenchX's released weights ('state_dict' or 'model'); the method's pretrained_prefix is "
                         "found, or give it with --prefix"),
}


@dataclass
class ImportReport:
    """What a load did: the prefix used, what loaded and what did not."""

    prefix: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # backbone tensors left at their initialisation
    unused: list[str] = field(default_factory=list)  # checkpoint keys under the prefix that matched nothing
    adapted: list[str] = field(default_factory=list)  # 3-channel input convolutions summed to 1 channel
    fraction: float = 0.0  # of the backbone's parameters (by count) that loaded

    def lines(self) -> list[str]:
        out = [f"loaded {len(self.loaded)} of {len(self.loaded) + len(self.missing)} backbone tensors "
               f"({100 * self.fraction:.1f} % of its parameters) from keys prefixed '{self.prefix}'"]
        if self.adapted:
            out.append("summed to one input channel: " + ", ".join(self.adapted))
        if self.missing:
            out.append(f"NOT loaded (left at random initialisation): {_some(self.missing)}")
        if self.unused:
            out.append(f"checkpoint keys under the prefix that were not used: {_some(self.unused)}")
        return out

    def record(self) -> dict[str, Any]:
        return {"prefix": self.prefix, "loaded_fraction": round(self.fraction, 6), "loaded": len(self.loaded),
                "missing": self.missing[:50], "unused": self.unused[:50]}


def _some(keys: list[str], limit: int = 8) -> str:
    return ", ".join(keys[:limit]) + (f" … (+{len(keys) - limit})" if len(keys) > limit else "")


class _PlainMapping:
    """Stands in for Lightning's ``AttributeDict`` (a dict subclass holding hyper-parameters): the
    unpickler builds a plain ``dict`` instead, and only fills it with the plain data it allows."""

    def __new__(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:  # type: ignore[misc]
        return {}


_LIGHTNING_MAPPINGS = ("lightning.fabric.utilities.data.AttributeDict",
                       "pytorch_lightning.utilities.parsing.AttributeDict",
                       "lightning_fabric.utilities.data.AttributeDict")


def read_state_dict(path: Path, key_map: KeyMap) -> dict[str, Any]:
    """The tensors of a checkpoint file, unwrapped as ``key_map`` says, read safely."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"checkpoint '{path}' does not exist or is not a file.")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            state: Any = load_file(str(path))
        except Exception as exc:  # noqa: BLE001 (a header error, a truncated file)
            raise DataError(f"checkpoint '{path}' is not a readable safetensors file: {exc}") from None
    else:
        try:
            with torch.serialization.safe_globals([(_PlainMapping, name) for name in _LIGHTNING_MAPPINGS]):
                state = load_checkpoint(path)
        except CheckpointError as exc:
            raise DataError(f"{exc} If it is a published checkpoint holding other objects, extract its tensors once "
                            "where you trust the file: torch.save(torch.load(PATH, weights_only=False)['state_dict'], "
                            "'weights.pt').") from None
    for key in key_map.unwrap:
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    tensors = {k: v for k, v in state.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not tensors:
        raise DataError(f"checkpoint '{path}' holds no tensors where the key map looks "
                        f"({' or '.join(repr(k) for k in key_map.unwrap)}, or the top level).")
    return tensors


def _adapt(name: str, source: Any, target: Any) -> Any | None:
    """``source`` shaped like ``target``: as is, or a 3-channel input convolution summed to 1 channel."""
    if tuple(source.shape) == tuple(target.shape):
        return source
    if (source.ndim == 4 and target.ndim == 4 and source.shape[1] == 3 and target.shape[1] == 1
            and source.shape[0] == target.shape[0] and source.shape[2:] == target.shape[2:]):
        return source.sum(dim=1, keepdim=True)
    return None


def _matches(state: dict[str, Any], target: dict[str, Any], prefix: str, strip: tuple[str, ...]) -> dict[str, str]:
    """backbone key → checkpoint key, for the keys under ``prefix`` that fit."""
    found: dict[str, str] = {}
    for key, value in state.items():
        if not key.startswith(prefix):
            continue
        name = key[len(prefix):]
        for text in strip:
            if text and name.startswith(text):
                name = name[len(text):]
        if name in target and _adapt(name, value, target[name]) is not None:
            found[name] = key
    return found


def _candidate_prefixes(state: dict[str, Any]) -> list[str]:
    prefixes = {""}
    for key in state:
        parts = key.split(".")
        prefixes.update(".".join(parts[:i]) + "." for i in range(1, len(parts)))
    return sorted(prefixes, key=len)


def load_backbone(backbone: Any, path: Path, fmt: str | None = None, prefix: str | None = None,
                  strip: list[str] | None = None, min_loaded: float = MIN_LOADED) -> ImportReport:
    """Load the image backbone's weights from ``path`` into ``backbone``; refuse a mostly random result."""
    if fmt is not None and fmt not in KEY_MAPS:
        raise ConfigError(f"--format '{fmt}': use one of {', '.join(KEY_MAPS)}.")
    key_map = KEY_MAPS[fmt] if fmt else KEY_MAPS["timm"]
    state = read_state_dict(path, key_map)
    extra_strip = tuple(key_map.strip) + tuple(strip or ())
    target = {k: v for k, v in backbone.state_dict().items() if not k.endswith("num_batches_tracked")}
    if prefix is not None:
        candidates = [prefix]
    elif key_map.prefixes is not None:
        candidates = list(key_map.prefixes)
    else:
        candidates = _candidate_prefixes(state)
    scored = [(len(_matches(state, target, p, extra_strip)), p) for p in candidates]
    best = max(scored, key=lambda item: (item[0], -len(item[1])))[1]  # most matches; the shorter prefix on a tie
    matches = _matches(state, target, best, extra_strip)
    report = ImportReport(prefix=best)
    merged = dict(backbone.state_dict())
    for name, key in matches.items():
        adapted = _adapt(name, state[key], target[name])
        if tuple(adapted.shape) != tuple(state[key].shape):
            report.adapted.append(name)
        merged[name] = adapted.to(target[name].dtype)
        report.loaded.append(name)
    report.missing = [k for k in target if k not in matches]
    used = set(matches.values())
    report.unused = [k for k in state if k.startswith(best) and k not in used]
    total = sum(v.numel() for v in target.values() if v.is_floating_point())
    done = sum(target[k].numel() for k in matches if target[k].is_floating_point())
    report.fraction = done / total if total else 0.0
    if report.fraction < min_loaded:
        sample = ", ".join(list(state)[:6])
        raise DataError(
            f"checkpoint '{path}' would leave the image backbone mostly random: only {100 * report.fraction:.1f} % of "
            f"its parameters load (prefix '{best}', {len(matches)} of {len(target)} tensors). The checkpoint's keys "
            f"start like: {sample}; the backbone's like: {', '.join(list(target)[:4])}. Pick the layout with --format "
            f"({', '.join(KEY_MAPS)}), give the backbone's prefix with --prefix (e.g. --prefix img_encoder_q.model.), "
            "or check --arch.")
    backbone.load_state_dict(merged)
    return report
