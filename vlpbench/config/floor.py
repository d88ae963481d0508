"""Floor rows: the same encoders with no pretraining, the bottom anchor of a board.

A variant sets ``floor: random`` or ``floor: imagenet`` (a run-level key, like ``tasks``):

- ``random``: the encoders are built as any run builds them (random initialisation from the run's
  seed; the bert tokenizer is still trained on the pretraining reports, which is not pretraining)
  and evaluated without a single optimiser step. No local weights may be set: a random floor with
  ImageNet or BERT weights would not be random.
- ``imagenet``: the image encoder loads the local ImageNet weights of
  ``model.image_encoder.pretrained_path`` (never downloaded) and is evaluated without pretraining;
  the text encoder is the configured one (its own local weights if ``model.text_encoder.pretrained``
  names them, random otherwise) — the "no vision-language pretraining" row of the field's papers.

A floor's identity (:func:`floor_identity`) keeps only what its evaluation depends on — ``data``,
``model``, ``tasks``, the floor kind and the evaluation's precision/device/threads — so editing the
objective or the schedule of the experiment's base never supersedes its floor rows, and a floor
never shares an identity (or a reused pretraining) with a pretrained run, whose config has no
``floor`` key. The oracle miner (label-aware positives) stays the ceiling of false-negative
handling; the board labels both (:func:`variant_role`).
"""

from __future__ import annotations

import copy
from typing import Any, Callable

from vlpbench.core.errors import ConfigError

#: floor kind → what the board says of it
FLOOR_LABELS = {"random": "floor (random init)", "imagenet": "floor (ImageNet init)"}
CEILING_LABEL = "ceiling (oracle)"
#: pretrain keys the evaluation of a floor reads (the tasks' precision, the device, the CPU threads)
EVALUATION_KEYS = ("precision", "device", "threads")
#: encoder parameters that name local weights (timm: pretrained_path; bert: pretrained)
WEIGHT_KEYS = ("pretrained_path", "pretrained")


def floor_of(config: dict[str, Any] | None) -> str | None:
    """The floor kind of a resolved config (``None``: a pretrained run)."""
    kind = (config or {}).get("floor")
    return str(kind) if kind else None


def floor_identity(config: dict[str, Any]) -> dict[str, Any]:
    """What a floor run's identity hashes: its config without the objective and the training-only
    pretrain settings (a floor never trains, so they cannot change its scores)."""
    kept = {key: copy.deepcopy(value) for key, value in config.items() if key not in ("objective", "pretrain")}
    pretrain = config.get("pretrain") or {}
    kept["pretrain"] = {key: pretrain[key] for key in EVALUATION_KEYS if key in pretrain}
    return kept


def local_weights(spec: dict[str, Any]) -> tuple[str, Any] | None:
    """(parameter, value) of the local weights an encoder spec loads, or ``None``."""
    for key in WEIGHT_KEYS:
        if spec.get(key):
            return key, spec[key]
    return None


def check_floor(resolved: dict[str, Any], where: Callable[[tuple], str]) -> None:
    """Refuse a floor that cannot mean what it says, naming the file, the line and the key."""
    kind = floor_of(resolved)
    if kind is None:
        return
    model = resolved.get("model") or {}
    image, text = model.get("image_encoder") or {}, model.get("text_encoder") or {}
    if kind == "random":
        for slot, spec in (("image_encoder", image), ("text_encoder", text)):
            found = local_weights(spec)
            if found is not None:
                raise ConfigError(
                    f"{where(('floor',))}: 'floor' = random evaluates randomly initialised encoders, but "
                    f"model.{slot}.{found[0]} = {found[1]!r} loads local weights. Set "
                    f"model.{slot}.{found[0]}: null in this variant for a random floor, or use floor: imagenet for "
                    "the ImageNet-initialised one.")
    if kind == "imagenet" and not image.get("pretrained_path"):
        raise ConfigError(
            f"{where(('floor',))}: 'floor' = imagenet evaluates the image encoder initialised from local ImageNet "
            f"weights, but model.image_encoder ('{image.get('name')}') names none. Give the weights file in this "
            "variant, e.g. model.image_encoder.pretrained_path: ~/weights/resnet50_imagenet.pth (a timm/torch "
            "checkpoint on this machine; nothing is downloaded), or use floor: random.")


def variant_role(config: dict[str, Any] | None) -> str:
    """The board's role of a run: a floor, the oracle ceiling, or '' (a method)."""
    kind = floor_of(config)
    if kind is not None:
        return FLOOR_LABELS.get(kind, f"floor ({kind})")
    miner = ((config or {}).get("objective") or {}).get("positive_miner") or {}
    return CEILING_LABEL if isinstance(miner, dict) and miner.get("name") == "oracle" else ""


def describe(kind: str) -> str:
    """One line for ``vlpbench validate``."""
    if kind == "imagenet":
        return ("floor (ImageNet init): no pretraining; the image encoder is evaluated as loaded from its local "
                "ImageNet weights, the text encoder as built")
    return "floor (random init): no pretraining; both encoders are evaluated as built from the run's seed"


def floor_lines(runs: list[Any]) -> list[str]:
    """``variant 'X': floor (…): …`` for each floor variant among ``runs`` (RunSpecs), for ``validate``."""
    kinds = {run.variant: floor_of(run.config) for run in runs}
    return [f"variant '{variant}': {describe(kind)}" for variant, kind in kinds.items() if kind]
