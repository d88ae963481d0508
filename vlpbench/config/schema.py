"""Pydantic models of an experiment file. Unknown keys are errors everywhere.

A *component spec* is ``{name: <registered name>, <param>: <value>, ...}``: the ``name`` picks the
component, the other keys are validated later by that component's own ``Params`` model (see
:mod:`vlpbench.config.components`), so every installed plugin's options are checked as strictly
as the core's.
"""

from __future__ import annotations

import re
import signal as signals
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: Checked by pydantic (whose "$" is the end of the text) and by ``re.fullmatch`` (Python's "$" also
#: matches before a final newline, so ``re.match`` would accept "clip\n").
VARIANT_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.+\-]*$"
#: Seeds seed numpy, whose seeds are 32-bit.
MAX_SEED = 2**32 - 1
#: Names (experiment, variants, eval labels) become folder names: bounded well below the 255-byte limit.
NAME_MAX_LENGTH = 100


def is_plain_name(name: object) -> bool:
    """One line, no control characters or separators, not '.'/'..', at most :data:`NAME_MAX_LENGTH` characters."""
    return (isinstance(name, str) and len(name) <= NAME_MAX_LENGTH and re.fullmatch(VARIANT_NAME_PATTERN, name) is not None
            and name not in (".", ".."))


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


class Stage(Strict):
    """One stage of a multi-stage schedule: from ``start`` (fraction of the run's steps, like a
    component's ``start``) a fresh optimiser (new moments) and a fresh warm-up + cosine schedule."""

    name: str = Field(description="what the stage is called in the history and the ablation view")
    start: float = Field(ge=0.0, lt=1.0, description="fraction of the steps before the stage (the first: 0)")
    optimizer: Literal["adamw", "adam"] = Field("adamw", description="adam: L2 weight decay in the gradient (as "
                                                                     "torch.optim.Adam); adamw: decoupled")
    lr: float | None = Field(None, gt=0, description="peak learning rate (default: pretrain.lr)")
    weight_decay: float | None = Field(None, ge=0, description="default: pretrain.weight_decay")
    warmup: float = Field(0.0, ge=0, lt=1, description="fraction of the stage's steps with linear warm-up")
    warmup_start_lr: float = Field(0.0, ge=0, description="learning rate at the stage's first step")
    min_lr: float = Field(0.0, ge=0, description="learning rate at the stage's end (cosine)")


class PretrainConfig(Strict):
    epochs: int = Field(5, ge=0)
    batch_size: int = Field(64, ge=2)
    lr: float = Field(4.0e-4, gt=0)
    weight_decay: float = Field(1.0e-6, ge=0)
    warmup: float = Field(0.1, ge=0, lt=1, description="fraction of steps with linear warm-up")
    grad_clip: float | None = Field(None, gt=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32", description="autocast precision; fp16 (CUDA only) adds a gradient scaler")
    threads: int | None = Field(None, ge=1, le=1024, description="torch CPU threads (None: torch's default)")
    augment: bool = Field(True, description="light random affine + contrast jitter (never flips), on the device")
    log_every: int = Field(10, ge=1, description="steps between reads of the losses from the device")
    sentence_shuffle: bool = Field(False, description="FaNe's per-load sentence shuffle: each report's sentences in a "
                                   "new order every epoch (seeded by run seed, epoch and sample)")
    workers: int | None = Field(None, ge=0, le=64, description="DataLoader worker processes gathering batches "
                                "(None: 0 on the CPU, up to 8 per process on a GPU); results do not depend on it")
    accumulate: int = Field(1, ge=1, description="micro-batches per optimiser step (gradient accumulation)")
    accumulation: Literal["micro"] = Field(
        "micro", description="negatives under accumulation: 'micro' = each micro-batch is its own negative set")
    grad_checkpointing: bool = Field(False, description="recompute encoder activations in the backward pass")
    freeze_image_stages: int = Field(0, ge=0, description="freeze the image encoder's first N stages (1 = the stem)")
    freeze_text_layers: int = Field(0, ge=0, description="freeze the text encoder's embeddings and first N layers")
    channels_last: bool = Field(False, description="image encoder in channels_last memory format (CNNs on GPUs)")
    compile: bool = Field(False, description="torch.compile the encoders")
    checkpoint_every: int | None = Field(None, ge=1, description="also checkpoint every N steps (exact mid-epoch resume)")
    stages: list[Stage] = Field(
        default_factory=list, description="multi-stage schedule (e.g. CM-CGNS's stage 2): each stage rebuilds the "
                                          "optimiser and its warm-up + cosine schedule; empty: one AdamW schedule")
    find_unused_parameters: bool | None = Field(
        None, description="DDP's find_unused_parameters (None: on only when a term starts later in the run or a "
                          "component may leave parameters without gradient)")


    @model_validator(mode="after")
    def _consistent(self) -> "PretrainConfig":
        if self.batch_size % self.accumulate:
            raise ValueError(f"batch_size = {self.batch_size} must be a multiple of accumulate = {self.accumulate} "
                             "(each optimiser step takes accumulate equal micro-batches)")
        if self.stages:
            starts = [stage.start for stage in self.stages]
            if starts[0] != 0.0 or any(b <= a for a, b in zip(starts, starts[1:])):
                raise ValueError(f"stages must start at 0.0 and in increasing order, got starts {starts}")
            if len({stage.name for stage in self.stages}) != len(self.stages):
                raise ValueError("stage names must differ")
        if self.precision == "fp16" and self.device == "cpu":
            raise ValueError("precision 'fp16' needs a CUDA device (it uses a gradient scaler); use 'bf16' or "
                             "'fp32' with device 'cpu'")
        return self


class RunConfig(Strict):
    """Everything that defines one run except its seed (one variant, resolved)."""

    data: ComponentSpec = ComponentSpec(name="synthcxr")
    model: ModelConfig = ModelConfig()
    objective: ObjectiveConfig = ObjectiveConfig()
    pretrain: PretrainConfig = PretrainConfig()
    tasks: list[ComponentSpec] = Field(default_factory=lambda: [ComponentSpec(name="linear_probe")])
    #: Left out of the resolved config when unset, so runs made before it existed keep their identity.
    floor: Literal["random", "imagenet"] | None = Field(
        None, exclude_if=lambda value: value is None,
        description="a floor row: no pretraining, the encoders are evaluated as built — 'random' (random "
                    "initialisation with the run's seed) or 'imagenet' (the image encoder from the local ImageNet "
                    "weights of model.image_encoder.pretrained_path); see vlpbench.config.floor")


class SlurmConfig(Strict):
    """The ``launcher:`` section: how ``--launcher slurm`` submits (validated even when run locally)."""

    partition: str | None = Field(None, description="Slurm partition (default: the cluster's default)")
    time: int = Field(60, ge=1, description="time limit of each job, in minutes")
    gpus: int = Field(0, ge=0, description="GPUs per job (per node for a sweep)")
    cpus: int = Field(1, ge=1, description="CPUs per job (per node for a sweep; Ray uses them all)")
    mem_gb: float | None = Field(None, gt=0, description="memory per job in GB (default: the cluster's)")
    array_parallelism: int = Field(16, ge=1, description="at most this many array tasks run at once")
    nodes: int = Field(1, ge=1, description="nodes of each job: a run trains on nodes × tasks_per_node processes; a "
                                            "sweep's Ray cluster spans them (head on the first node)")
    tasks_per_node: int = Field(1, ge=1, description="processes per node of each run: above 1 the run trains with "
                                                     "DistributedDataParallel, one process per GPU (set gpus to match)")
    max_requeues: int = Field(3, ge=0, description="times a timed-out or preempted task is requeued")
    ray_port: int | None = Field(None, ge=1024, le=65535,
                                 description="port of the Ray head in a multi-node sweep (default: derived from the "
                                             "Slurm job id, outside the ephemeral range, checked free)")
    signal: str = Field("USR2", description="signal Slurm sends before a time limit or a preemption; the job "
                                            "checkpoints and requeues on it (submitit's default, USR2; NCCL catches "
                                            "USR1, and Slurm itself sends TERM, CONT and KILL)")
    sbatch: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="extra sbatch options, e.g. {account: myproj, qos: high, constraint: a100}")
    setup: list[str] = Field(default_factory=list, description="shell lines run before each job (module load, ...)")

    @field_validator("signal")
    @classmethod
    def _catchable_signal(cls, value: str) -> str:
        name = value.strip().upper().removeprefix("SIG")
        if name in {"KILL", "STOP", "TERM", "CONT", "INT"} or not hasattr(signals, f"SIG{name}"):
            raise ValueError(f"'{value}' cannot be the requeue signal: give a signal the job can catch that Slurm "
                             "does not send for other reasons, e.g. USR2 (the default), HUP or URG")
        return name

    @field_validator("sbatch")
    @classmethod
    def _no_signal_in_sbatch(cls, value: dict[str, Any]) -> dict[str, Any]:
        if "signal" in value:
            raise ValueError("set the requeue signal with launcher.signal (e.g. signal: HUP), not sbatch.signal: "
                             "the job must listen for the same signal Slurm sends")
        return value


class SearchDomain(Strict):
    """One dimension of a search space: exactly one of the four keys."""

    choice: list[Any] | None = Field(None, min_length=1, description="one of these values")
    uniform: tuple[float, float] | None = Field(None, description="[low, high], uniform")
    loguniform: tuple[float, float] | None = Field(None, description="[low, high], uniform in log space (low > 0)")
    randint: tuple[int, int] | None = Field(None, description="[low, high), an integer")

    @model_validator(mode="after")
    def _one_kind(self) -> "SearchDomain":
        given = [k for k in ("choice", "uniform", "loguniform", "randint") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of choice, uniform, loguniform, randint "
                             f"(got {', '.join(given) or 'none'})")
        for kind in ("uniform", "loguniform", "randint"):
            bounds = getattr(self, kind)
            if bounds is not None and not bounds[0] < bounds[1]:
                raise ValueError(f"{kind} takes [low, high] with low < high, got {list(bounds)}")
        if self.loguniform is not None and self.loguniform[0] <= 0:
            raise ValueError(f"loguniform takes a positive low bound, got {self.loguniform[0]}")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("choice", "uniform", "loguniform", "randint") if getattr(self, k) is not None)

    @property
    def values(self) -> Any:
        return getattr(self, self.kind)

    def examples(self) -> list[Any]:
        """Values at the edges of the domain (validated against the config before a sweep starts)."""
        if self.choice is not None:
            return list(self.choice)
        low, high = self.values
        return [low, high - 1] if self.kind == "randint" else [low, high]


class SweepScheduler(Strict):
    name: Literal["asha", "fifo"] = Field("asha", description="asha: stop poor trials early; fifo: run every trial out")
    grace_period: int = Field(1, ge=1, description="epochs every trial runs before it can be stopped")
    reduction_factor: float = Field(2.0, gt=1)


class SweepSearcher(Strict):
    name: Literal["random", "optuna"] = Field("random", description="optuna needs the optuna extra")
    seed: int | None = Field(0, description="seed of the search (None: not reproducible)")


class SweepResources(Strict):
    cpu: float = Field(1.0, gt=0)
    gpu: float = Field(0.0, ge=0)


class SweepConfig(Strict):
    """The ``sweep:`` section: what ``vlpbench sweep`` searches, how it scores and stops trials."""

    space: dict[str, SearchDomain] = Field(min_length=1, description="dotted config key -> domain")
    metric: str = Field(description="'pretrain/loss' or a task score 'TASK/COLUMN' measured on the validation split")
    mode: Literal["min", "max"]
    num_samples: int = Field(4, ge=1)
    max_concurrent: int | None = Field(None, ge=1, description="trials at once (default: as resources allow)")
    scheduler: SweepScheduler = SweepScheduler()
    searcher: SweepSearcher = SweepSearcher()
    resources: SweepResources = SweepResources()
    seed: int | None = Field(None, description="training seed of every trial (default: the file's first seed)")
    start_points: list[dict[str, Any]] = Field(
        default_factory=list, description="configurations tried first, in order, before the searcher samples "
                                          "(Ray Tune's points_to_evaluate; they count towards num_samples): a "
                                          "known-good setting to beat, or the published one")

    @model_validator(mode="after")
    def _start_points_fit(self) -> "SweepConfig":
        for i, point in enumerate(self.start_points):
            unknown = sorted(set(point) - set(self.space))
            if unknown:
                raise ValueError(f"start_points[{i}] sets {', '.join(unknown)}, which sweep.space does not search; "
                                 f"use keys of the space ({', '.join(self.space)})")
        if len(self.start_points) > self.num_samples:
            raise ValueError(f"{len(self.start_points)} start_points but num_samples is {self.num_samples}; "
                             "raise num_samples to at least the number of start points")
        return self


class ExperimentFile(RunConfig):
    """The top level of an experiment YAML file."""

    name: str = Field(pattern=VARIANT_NAME_PATTERN, max_length=NAME_MAX_LENGTH)
    description: str = ""
    seeds: list[Annotated[int, Field(ge=0, le=MAX_SEED)]] = Field(default_factory=lambda: [0], min_length=1)
    baseline: str | None = Field(None, description="variant the leaderboard compares against")
    variants: dict[str, dict[str, Any]] = Field(default_factory=dict)
    launcher: SlurmConfig | None = Field(None, description="settings of --launcher slurm (run and sweep)")
    sweep: SweepConfig | None = Field(None, description="search space and metric of `vlpbench sweep`")
    report_to: list[Literal["tensorboard", "mlflow", "wandb"]] = Field(
        default_factory=list, description="experiment trackers every run logs to while it trains (not part of "
                                          "a run's identity); `vlpbench run --report-to` overrides it")

    @field_validator("variants")
    @classmethod
    def _variant_names(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for name in value:
            if not re.fullmatch(VARIANT_NAME_PATTERN, name):
                raise ValueError(f"variant name {name!r} may only use letters, digits and _ . + - (one line)")
            if len(name) > NAME_MAX_LENGTH:
                raise ValueError(f"variant name '{name[:40]}…' has {len(name)} characters; use at most {NAME_MAX_LENGTH}")
        return value
