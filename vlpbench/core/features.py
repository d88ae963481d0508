"""The tensors that flow between encoders, losses and heads (the component contracts).

Shapes: B batch, D shared embedding size, N patches (grid h×w), M word tokens, T sentences.
Projected embeddings are *not* normalised here; every similarity normalises first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from vlpbench.objective.scope import World


@dataclass
class ImageFeatures:
    global_emb: Tensor  # v [B, D]
    patch_emb: Tensor  # P [B, N, D]
    grid: tuple[int, int]  # (h, w) with h*w == N
    global_feat: Tensor  # pre-projection global feature [B, C] (used by downstream probes)
    patch_feat: Tensor  # pre-projection patch features [B, N, C]
    #: Optional (only when a component requests ``image:cls_attention``, see
    #: :mod:`vlpbench.models.requests`): the last block's attention of the class token to each
    #: patch [B, N], softmax over all tokens, mean over heads, no gradient. None for a CNN.
    cls_attention: Tensor | None = None


@dataclass
class TextFeatures:
    global_emb: Tensor  # t [B, D]
    word_emb: Tensor  # W [B, M, D]
    word_mask: Tensor  # bool [B, M], True for real word tokens (no special tokens, no padding)
    sentence_emb: Tensor  # S [B, T, D], mean of the word tokens of each sentence
    sentence_mask: Tensor  # bool [B, T], True for real sentences
    word_sentence: Tensor  # long [B, M], sentence index of each word token (-1: none)
    #: Optional (only when a component requests ``text:cls_attention``): the last layer's attention
    #: of [CLS] to every TOKEN position [B, M_tokens], softmax over the real tokens (0 at padding),
    #: mean over heads, no gradient. Indexed by token even when the words are aggregated.
    cls_attention: Tensor | None = None
    #: Set when the encoder aggregates word pieces into words (``word_pieces: sum|mean``): for each
    #: token position the word slot of ``word_emb`` it went into, -1 for padding [B, M_tokens]
    #: (slot 0 is [CLS], then the words, then [SEP]; see :mod:`vlpbench.models.word_pieces`).
    piece_word: Tensor | None = None


@dataclass
class Batch:
    """One training batch as the data loader yields it."""

    images: Tensor  # uint8 [B, 1, H, W] from the loader (normalised on the device), or float normalised
    input_ids: Tensor  # long [B, M]
    attention_mask: Tensor  # long [B, M]
    sentence_index: Tensor  # long [B, M] (-1 for special tokens and padding)
    labels: Tensor  # float [B, F] ground-truth findings (only the oracle miner may look)
    index: Tensor  # long [B] sample index in the pretraining split
    extras: dict[str, Any] = field(default_factory=dict)

    def to(self, device: torch.device, non_blocking: bool = True) -> "Batch":
        move = lambda t: t.to(device, non_blocking=non_blocking) if isinstance(t, Tensor) else t  # noqa: E731
        return Batch(*(move(getattr(self, f)) for f in ("images", "input_ids", "attention_mask",
                                                          "sentence_index", "labels", "index")),
                     extras={k: move(v) for k, v in self.extras.items()})

    def pin_memory(self) -> "Batch":
        """A copy in page-locked memory (DataLoader's ``pin_memory`` calls this)."""
        pin = lambda t: t.pin_memory() if isinstance(t, Tensor) else t  # noqa: E731
        return Batch(*(pin(getattr(self, f)) for f in ("images", "input_ids", "attention_mask",
                                                         "sentence_index", "labels", "index")),
                     extras={k: pin(v) for k, v in self.extras.items()})

    def __len__(self) -> int:
        return self.index.shape[0]


@dataclass
class AlignmentInputs:
    """Everything a miner, weighting, head or auxiliary objective may look at in one step."""

    image: ImageFeatures
    text: TextFeatures
    batch: Batch
    progress: float  # fraction of pretraining done, in [0, 1)
    #: ``local`` or ``gathered`` (see :mod:`vlpbench.objective.scope`). A miner or weighting with
    #: the gathered scope receives a view whose global embeddings, ``batch.index`` and
    #: ``batch.labels`` span every process's batch (using another field raises an error that says
    #: so); a head receives the local features and gathers what it compares across the batch itself
    #: (``scope.gather_rows``).
    scope: str = "local"
    world: World = field(default_factory=World)
    #: How gathered rows pass gradients back (``own`` or ``summed``, see ``scope.gather_rows``).
    gradient: str = "own"
    #: Intermediate tensors a component publishes for later ones in the same step (e.g. CM-CGNS's
    #: text-conditioned patch features, which its reconstruction objective reuses).
    cache: dict[str, Any] = field(default_factory=dict)
