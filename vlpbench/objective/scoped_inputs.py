"""Moving alignment inputs and the miner/weighting contracts between the local and gathered scopes.

- :func:`gathered_view`: the inputs a ``gathered`` miner or weighting sees — global embeddings
  all-gathered with gradient (own rows), sample indices and labels all-gathered; the dense
  features stay per process and are left out (a placeholder that explains this when used).
- :func:`to_gathered`: a ``local`` component's output placed into the gathered [W·B, W·B] frame:
  its per-process blocks on the diagonal; between processes nothing is a positive, nothing is
  ignored and every negative keeps weight 1; extra candidate columns are gathered by row.
- :func:`to_local`: a ``gathered`` component's output cut down to this process's rows and columns.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TypeVar

from torch import Tensor

from vlpbench.core.features import AlignmentInputs, Batch, ImageFeatures, TextFeatures
from vlpbench.objective.contracts import DirectionAdjustment, NegativeAdjustment, Positives
from vlpbench.objective.scope import World, block_diagonal, gather_constant, gather_rows, own_rows

Contract = TypeVar("Contract", Positives, NegativeAdjustment)


class NotGathered:
    """Stands for a per-process field in the gathered view; any use says what is gathered."""

    def __init__(self, field: str) -> None:
        self._field = field

    def __getattr__(self, name: str) -> None:
        raise AttributeError(
            f"{self._field} is not available in the gathered negative scope: only image.global_emb, "
            "text.global_emb, batch.index and batch.labels span every process. Use the local scope for this "
            "component, or gather what it compares itself with vlpbench.objective.scope.gather_rows.")

    def __getitem__(self, item: object) -> None:
        self.__getattr__("__getitem__")


def gathered_view(local: AlignmentInputs) -> AlignmentInputs:
    """The gathered-scope inputs of a miner or negative weighting (see the module docstring)."""
    world, gradient = local.world, local.gradient  # type: ignore[assignment]
    missing = lambda name: NotGathered(name)  # noqa: E731
    image = ImageFeatures(gather_rows(local.image.global_emb, gradient, world), missing("image.patch_emb"),  # type: ignore[arg-type]
                          local.image.grid, missing("image.global_feat"), missing("image.patch_feat"))  # type: ignore[arg-type]
    text = TextFeatures(gather_rows(local.text.global_emb, gradient, world), *(missing(f"text.{name}") for name in (  # type: ignore[arg-type]
        "word_emb", "word_mask", "sentence_emb", "sentence_mask", "word_sentence")))
    batch = Batch(*(missing(f"batch.{name}") for name in ("images", "input_ids", "attention_mask",  # type: ignore[arg-type]
                                                          "sentence_index")),
                  gather_constant(local.batch.labels, world), gather_constant(local.batch.index, world),
                  extras={k: v for k, v in local.batch.extras.items() if not isinstance(v, Tensor)})  # plain settings
    return replace(local, image=image, text=text, batch=batch, scope="gathered")


def to_gathered(value: Contract, world: World, gradient: str) -> Contract:
    if isinstance(value, Positives):
        return _positives_to_gathered(value, world)  # type: ignore[return-value]
    return _adjustment_to_gathered(value, world, gradient)  # type: ignore[return-value]


def to_local(value: Contract, world: World, rows: int) -> Contract:
    own = own_rows(world, rows)
    if isinstance(value, Positives):
        return Positives(value.affinity[own, own], None if value.ignore is None else value.ignore[own, own])  # type: ignore[return-value]
    direction = lambda d: DirectionAdjustment(  # noqa: E731
        None if d.weight is None else d.weight[own, own], None if d.extra_logits is None else d.extra_logits[own])
    return NegativeAdjustment(direction(value.image_to_text), direction(value.text_to_image),  # type: ignore[return-value]
                              dict(value.losses))


def _blocks(matrix: Tensor, world: World, gradient: str = "own") -> Tensor:
    """[B,B] on each process → [W,B,B] (gradient only for this process's block)."""
    return gather_rows(matrix, gradient, world).view(world.size, *matrix.shape)


def _positives_to_gathered(positives: Positives, world: World) -> Positives:
    affinity = block_diagonal(_blocks(positives.affinity.detach(), world), 0.0)
    ignore = None
    if positives.ignore is not None:
        ignore = block_diagonal(_blocks(positives.ignore.to(affinity.dtype), world), 0.0) > 0.5
    return Positives(affinity, ignore)


def _adjustment_to_gathered(adjustment: NegativeAdjustment, world: World, gradient: str) -> NegativeAdjustment:
    def direction(d: DirectionAdjustment) -> DirectionAdjustment:
        weight = None if d.weight is None else block_diagonal(_blocks(d.weight, world, gradient), 1.0)
        extra = None
        if d.extra_logits is not None:
            extra = gather_rows(d.extra_logits, gradient, world)
        return DirectionAdjustment(weight, extra)
    return NegativeAdjustment(direction(adjustment.image_to_text), direction(adjustment.text_to_image),
                              dict(adjustment.losses))
