"""Pydantic models of an experiment file. Unknown keys are errors everywhere.

A *component spec* is ``{name: <registered name>, <param>: <value>, ...}``: the ``name`` picks the
component, the other keys are validated later by that component's own ``Params`` model (see
:mod:`vlpbench.config.components`), so every installed plugin's options are checked as strictly
as the core's.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

VARIANT_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.+\-]*$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ComponentSpec(BaseModel):
    """``{name: ..., **params}``; the params are checked by the component's ``Params`` model."""

    model_config = ConfigDict(extra="allow")

    name: str

    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


NegativeScope = Literal["local", "gathered"]


class ScopedSpec(ComponentSpec):
    """A component that may compare samples across the batch: its negative scope can be set."""

    scope: NegativeScope | None = Field(
        None, exclude_if=lambda value: value is None, description="'local' (this process's batch) or 'gathered' (every process's batch) "
                          "when training on several processes; default: objective.negative_scope")


class ScheduledSpec(ScopedSpec):
    """A loss-contributing component with a weight and a start point (fraction of the run)."""

    weight: float = Field(1.0, ge=0.0)
    start: float = Field(0.0, ge=0.0, lt=1.0, description="fraction of pretraining steps before the term switches on")


class ModelConfig(Strict):
    image_encoder: ComponentSpec = ComponentSpec(name="timm", arch="resnet18")
    text_encoder: ComponentSpec = ComponentSpec(name="bert")
    embed_dim: int = Field(128, ge=8, description="shared embedding size of the projections")


class ObjectiveConfig(Strict):
    global_loss: ComponentSpec = Field(ComponentSpec(name="infonce"), alias="global")
    positive_miner: ScopedSpec = ScopedSpec(name="identity")
    negative_weighting: list[ScopedSpec] = Field(default_factory=lambda: [ScopedSpec(name="uniform")])
    local_heads: list[ScheduledSpec] = Field(default_factory=list)
    auxiliaries: list[ScheduledSpec] = Field(default_factory=list)
    global_weight: float = Field(1.0, ge=0.0)
    negative_scope: NegativeScope = Field(
        "local", description="negative scope of the global loss, and the default of the miner, weightings and "
                             "heads: 'local' compares within each process's batch, 'gathered' across all processes "
                             "(the same as one process with the global batch). No effect on one process.")


class PretrainConfig(Strict):
    epochs: int = Field(5, ge=0)
    batch_size: int = Field(64, ge=2)
    lr: float = Field(4.0e-4, gt=0)
    weight_decay: float = Field(1.0e-6, ge=0)
    warmup: float = Field(0.1, ge=0, lt=1, description="fraction of steps with linear warm-up")
    grad_clip: float | None = Field(None, gt=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["fp32", "bf16"] = "fp32"
    threads: int | None = Field(None, ge=1, description="torch CPU threads (None: torch's default)")
    augment: bool = Field(True, description="light random affine + contrast jitter (never flips)")
    log_every: int = Field(10, ge=1)


class RunConfig(Strict):
    """Everything that defines one run except its seed (one variant, resolved)."""

    data: ComponentSpec = ComponentSpec(name="synthcxr")
    model: ModelConfig = ModelConfig()
    objective: ObjectiveConfig = ObjectiveConfig()
    pretrain: PretrainConfig = PretrainConfig()
    tasks: list[ComponentSpec] = Field(default_factory=lambda: [ComponentSpec(name="linear_probe")])


class ExperimentFile(RunConfig):
    """The top level of an experiment YAML file."""

    name: str = Field(pattern=VARIANT_NAME_PATTERN)
    description: str = ""
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    baseline: str | None = Field(None, description="variant the leaderboard compares against")
    variants: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("variants")
    @classmethod
    def _variant_names(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        import re

        for name in value:
            if not re.match(VARIANT_NAME_PATTERN, name):
                raise ValueError(f"variant name '{name}' may only use letters, digits and _ . + -")
        return value
