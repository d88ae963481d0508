"""The full pretraining objective, assembled from registered components.

``total = global_weight · global(miner, weightings) + Σ weighting terms + Σ_k λ_k head_k + Σ_a λ_a aux_a``

Heads and auxiliaries can start part-way through the run (``start``, a fraction of the steps:
CM-CGNS's two-stage schedule). The objective counts, per term, the steps in which it was active,
so a run can prove that no term silently stayed off.

On several processes each component works in its negative scope (``local`` or ``gathered``, see
:mod:`vlpbench.objective.scope`): the miner's and the weightings' outputs are moved into the global
loss's scope before they meet it, and heads get their scope to gather what they compare.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Callable

import torch
from torch import Tensor, nn

from vlpbench.core.build import build_component
from vlpbench.config.schema import ObjectiveConfig
from vlpbench.core.context import BuildContext
from vlpbench.core.features import AlignmentInputs
from vlpbench.objective.contracts import NegativeAdjustment, Positives, combine_directions
from vlpbench.objective.scope import current_world
from vlpbench.objective.scoped_inputs import Contract, gathered_view, to_gathered, to_local
from vlpbench.core.registry import Registry


@dataclass
class ObjectiveOutput:
    total: Tensor
    terms: dict[str, Tensor]  # each term as it enters the total (after its weight)
    #: Diagnostics that are not part of the loss (e.g. how many pairs the miner changed), as 0-d
    #: tensors on the loss's device: the trainer reads them with the losses, every ``log_every`` steps.
    stats: dict[str, Tensor] = field(default_factory=dict)


def mining_stats(positives: Positives) -> dict[str, Tensor]:
    """Per anchor: off-diagonal pairs the miner made (partly) positive, and pairs it ignored
    (device tensors: reading them is left to the trainer, so no step waits for the device)."""
    affinity = positives.affinity.detach()
    batch = affinity.shape[0]
    off_diagonal = ~torch.eye(batch, dtype=torch.bool, device=affinity.device)
    stats = {"mined_positives": ((affinity > 0) & off_diagonal).sum().float() / batch}
    stats["ignored"] = (positives.ignore.sum().float() / batch if positives.ignore is not None
                        else torch.zeros((), device=affinity.device))
    return stats


class ScheduledTerm(nn.Module):
    def __init__(self, label: str, module: nn.Module, weight: float, start: float, scope: str = "local") -> None:
        super().__init__()
        self.label, self.module, self.weight, self.start, self.scope = label, module, weight, start, scope


def _labels(names: list[str]) -> list[str]:
    """Unique term labels: the component name, suffixed with its position when repeated."""
    counts = Counter(names)
    return [f"{n}#{i}" if counts[n] > 1 else n for i, n in enumerate(names)]


class Objective(nn.Module):
    def __init__(self, config: ObjectiveConfig, registry: Registry, context: BuildContext) -> None:
        super().__init__()
        self.global_weight = config.global_weight
        self.global_scope = config.negative_scope
        scope_of = lambda spec: spec.scope or config.negative_scope  # noqa: E731
        self.global_loss = build_component(registry, "global_loss", config.global_loss, context)
        self.miner = build_component(registry, "positive_miner", config.positive_miner, context)
        self.miner_scope = scope_of(config.positive_miner)
        self.weightings = nn.ModuleList(build_component(registry, "negative_weighting", s, context)
                                        for s in config.negative_weighting)
        self.weighting_scopes = [scope_of(s) for s in config.negative_weighting]
        self.weighting_labels = _labels([s.name for s in config.negative_weighting])
        self.scheduled = nn.ModuleList()
        for kind, specs in (("local_head", config.local_heads), ("auxiliary", config.auxiliaries)):
            for label, spec in zip(_labels([s.name for s in specs]), specs):
                module = build_component(registry, kind, spec, context)
                self.scheduled.append(ScheduledTerm(label, module, spec.weight, spec.start, scope_of(spec)))
        self.active_steps: Counter[str] = Counter()
        self._miner_steps = torch.zeros((), dtype=torch.long)
        #: How gathered rows pass gradients back: ``own`` (open_clip) or ``summed`` (set by the
        #: trainer under DistributedDataParallel, see :mod:`vlpbench.objective.scope`).
        self.gradient = "own"

    def use_gradient(self, mode: str) -> None:
        """How gathered rows pass gradients back: ``own`` (each process its own rows' share, as
        open_clip) or ``summed`` (in full; the trainer's choice under DistributedDataParallel, which
        averages gradients over the processes; see :mod:`vlpbench.objective.scope`)."""
        if mode not in ("own", "summed"):
            raise ValueError(f"gradient mode {mode!r}: use 'own' or 'summed'")
        self.gradient = mode

    def scopes(self) -> dict[str, object]:
        """Every component's negative scope, for the run's provenance."""
        return {"global": self.global_scope, "positive_miner": self.miner_scope,
                "negative_weighting": dict(zip(self.weighting_labels, self.weighting_scopes)),
                "scheduled": {t.label: t.scope for t in self.scheduled}}

    def forward(self, inputs: AlignmentInputs) -> ObjectiveOutput:
        terms: dict[str, Tensor] = {}
        world = current_world()
        local = replace(inputs, scope="local", world=world, gradient=self.gradient)
        view = self._views(local)
        scope = self.global_scope if world.distributed else "local"
        rows = len(inputs.batch)
        positives = self.miner(view(self.miner_scope))
        positives = self._convert(positives, self.miner_scope, scope, local, rows)
        stats = mining_stats(positives)
        adjustments: list[NegativeAdjustment] = []
        for weighting, own_scope in zip(self.weightings, self.weighting_scopes):
            adjustment = weighting(view(own_scope), self._convert(positives, scope, own_scope, local, rows))
            adjustments.append(self._convert(adjustment, own_scope, scope, local, rows))
        i2t = combine_directions([a.image_to_text for a in adjustments])
        t2i = combine_directions([a.text_to_image for a in adjustments])
        features = view(scope)
        terms["global"] = self.global_weight * self.global_loss(
            features.image.global_emb, features.text.global_emb, positives, i2t, t2i)
        for label, adjustment in zip(self.weighting_labels, adjustments):
            for key, value in adjustment.losses.items():
                terms[f"{label}/{key}"] = value
        for term in self.scheduled:
            if inputs.progress < term.start or term.weight == 0:
                continue
            for key, value in term.module(replace(local, scope=term.scope if world.distributed else "local")).items():
                terms[f"{term.label}/{key}"] = term.weight * value
        if self.training:
            self.active_steps.update(terms.keys())
            # steps in which the miner changed the targets, counted on the device (read at checkpoints)
            changed = (stats["mined_positives"] > 0) | (stats["ignored"] > 0)
            self._miner_steps = self._miner_steps.to(changed.device) + changed.long()
        total = torch.stack(list(terms.values())).sum()
        return ObjectiveOutput(total, terms, stats)

    @staticmethod
    def _views(local: AlignmentInputs) -> Callable[[str], AlignmentInputs]:
        """``view(scope)``: the local inputs, or the gathered view (built once, when first needed)."""
        built: dict[str, AlignmentInputs] = {}

        def view(scope: str) -> AlignmentInputs:
            if scope == "local" or not local.world.distributed:
                return local
            if "gathered" not in built:
                built["gathered"] = gathered_view(local)
            return built["gathered"]
        return view

    @staticmethod
    def _convert(value: Contract, source: str, target: str, local: AlignmentInputs, rows: int) -> Contract:
        """Positives or a NegativeAdjustment computed in scope ``source``, expressed in ``target``."""
        if source == target or not local.world.distributed:
            return value
        if target == "gathered":
            return to_gathered(value, local.world, local.gradient)
        return to_local(value, local.world, rows)

    def step_counts(self) -> dict[str, int]:
        """Steps in which each term was active, and ``positive_miner``: steps in which the miner
        changed the targets (one device read)."""
        counts = dict(self.active_steps)
        miner = int(self._miner_steps)
        if miner:
            counts["positive_miner"] = counts.get("positive_miner", 0) + miner
        return counts

    def get_extra_state(self) -> dict[str, int]:
        return self.step_counts()

    def set_extra_state(self, state: dict[str, int]) -> None:
        self.active_steps = Counter(state)
        self._miner_steps = torch.zeros((), dtype=torch.long)
