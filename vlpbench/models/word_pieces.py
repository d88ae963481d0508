"""Word-piece aggregation: the pieces of a word (``##x`` continues the previous piece) become one word.

GLoRIA (``gloria/models/text_model.py:32-90``) and MGCA (``mgca/models/backbones/encoder.py:307-376``)
both run this walk over every report before their local losses: a word is the SUM of its pieces'
features, [CLS] and [SEP] are words of their own, the walk stops at [SEP] and the rest is zero. Here
it is one batched scatter:

- :func:`piece_words` gives every token position the word slot it goes into (slot 0 = [CLS], then
  the words in order, then [SEP]; -1 for padding), from a per-vocabulary table of continuation pieces;
- :func:`aggregate` sums (or averages) any per-token tensor [B, M, ...] into those slots; slots past a
  report's [SEP] stay zero, so the result keeps the token axis's length M (as the official code keeps
  its 97 / 112 positions).

The text encoder applies it to its hidden states when ``word_pieces`` is ``sum`` or ``mean`` and
publishes the slots as ``TextFeatures.piece_word``, so a component can aggregate other per-token
values (e.g. MGCA's [CLS] attention, which the official code sums over a word's pieces) the same way.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor


def continuation_table(tokens: Iterable[str]) -> Tensor:
    """bool [vocabulary]: True for the ids whose token continues a word (``##…``), in id order."""
    return torch.tensor([token.startswith("##") for token in tokens], dtype=torch.bool)


def piece_words(input_ids: Tensor, attention_mask: Tensor, continuation: Tensor) -> Tensor:
    """long [B, M]: the word slot of each token position (-1 at padding). A continuation piece joins
    the word before it; every other real token ([CLS], [SEP], a word's first piece) opens a slot."""
    real = attention_mask > 0
    opens = real & ~continuation.to(input_ids.device)[input_ids]
    opens[:, 0] = real[:, 0]  # the first token always opens a slot, whatever it is
    slots = torch.cumsum(opens.long(), dim=1) - 1
    return torch.where(real, slots.clamp_min(0), torch.full_like(slots, -1))


def aggregate(values: Tensor, slots: Tensor, mode: str = "sum") -> Tensor:
    """[B, M, ...] per token → [B, M, ...] per word slot (``sum`` or ``mean`` of the slot's pieces;
    unused slots are zero). Differentiable in ``values``."""
    batch, width = slots.shape
    index = slots.clamp_min(0)
    keep = (slots >= 0).to(values.dtype)
    shape = (batch, width) + (1,) * (values.dim() - 2)
    masked = values * keep.view(shape)
    out = torch.zeros_like(values).scatter_add(1, index.view(shape).expand_as(values), masked)
    if mode == "mean":
        counts = torch.zeros(batch, width, dtype=values.dtype, device=values.device).scatter_add(1, index, keep)
        out = out / counts.clamp_min(1.0).view(shape)
    elif mode != "sum":
        raise ValueError(f"word-piece aggregation '{mode}' is not one of sum, mean")
    return out


def slot_sentences(sentence_index: Tensor, slots: Tensor) -> Tensor:
    """long [B, M]: the sentence of each word slot (-1 for [CLS], [SEP] and unused slots)."""
    out = torch.full_like(sentence_index, -1)
    index = slots.clamp_min(0)
    # every piece of a word has the word's sentence; padding and specials write -1 (amax keeps the word's)
    return out.scatter_reduce(1, index, torch.where(slots >= 0, sentence_index, -1), reduce="amax")


def slot_mask(slots: Tensor) -> Tensor:
    """bool [B, M]: True for the word slots that hold a token ([CLS], words and [SEP])."""
    width = slots.shape[1]
    return torch.arange(width, device=slots.device)[None] <= slots.max(1, keepdim=True).values
