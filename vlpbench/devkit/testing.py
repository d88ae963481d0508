"""Helpers for testing components (vlpbench's own tests and third-party plugins' tests).

``feature_inputs`` builds an :class:`~vlpbench.core.features.AlignmentInputs` from given or random
feature tensors with ragged sentences and words (padding masked), without any encoder, so a loss
or head can be checked on literal numbers; ``permute_inputs`` reorders a batch for
permutation-invariance checks.

Part of the public surface (with :mod:`vlpbench.plugin_api`): a plugin's tests import these
helpers from here.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from vlpbench.core.features import AlignmentInputs, Batch, ImageFeatures, TextFeatures

__all__ = ["feature_inputs", "permute_inputs"]


def feature_inputs(
    image_global: Tensor | None = None,
    text_global: Tensor | None = None,
    patches: Tensor | None = None,
    sentences: Tensor | None = None,
    sentence_counts: Sequence[int] | None = None,
    words: Tensor | None = None,
    word_counts: Sequence[int] | None = None,
    batch_size: int = 4,
    dim: int = 8,
    grid: tuple[int, int] = (2, 2),
    labels: Tensor | None = None,
    index: Tensor | None = None,
    images: Tensor | None = None,
    progress: float = 0.5,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> AlignmentInputs:
    """Alignment inputs from the given tensors; anything missing is random (seeded).

    ``sentence_counts[i]`` / ``word_counts[i]``: how many of report i's sentence / word slots are
    real (the rest is padding); default: all real.
    """
    generator = torch.Generator().manual_seed(seed)
    rand = lambda *shape: torch.randn(*shape, generator=generator, dtype=dtype)  # noqa: E731
    first = next((t for t in (image_global, text_global, patches, sentences, words) if t is not None), None)
    if first is not None:
        batch_size = first.shape[0]
        dim = first.shape[-1]
    n_patches = grid[0] * grid[1]
    image_global = rand(batch_size, dim) if image_global is None else image_global
    text_global = rand(batch_size, dim) if text_global is None else text_global
    patches = rand(batch_size, n_patches, dim) if patches is None else patches
    sentences = rand(batch_size, 3, dim) if sentences is None else sentences
    words = rand(batch_size, 6, dim) if words is None else words
    counts = sentence_counts or [sentences.shape[1]] * batch_size
    sentence_mask = torch.arange(sentences.shape[1]).unsqueeze(0) < torch.tensor(counts).unsqueeze(1)
    w_counts = word_counts or [words.shape[1]] * batch_size
    word_mask = torch.arange(words.shape[1]).unsqueeze(0) < torch.tensor(w_counts).unsqueeze(1)
    word_sentence = torch.where(word_mask, torch.zeros_like(word_mask, dtype=torch.long), -1)
    image = ImageFeatures(image_global, patches, grid, image_global, patches)
    text = TextFeatures(text_global, words, word_mask, sentences, sentence_mask, word_sentence)
    size = 16
    batch = Batch(
        images=rand(batch_size, 1, size, size) if images is None else images,
        input_ids=torch.zeros(batch_size, words.shape[1], dtype=torch.long),
        attention_mask=word_mask.long(),
        sentence_index=word_sentence,
        labels=torch.zeros(batch_size, 2) if labels is None else labels,
        index=torch.arange(batch_size) if index is None else index,
    )
    return AlignmentInputs(image, text, batch, progress)


def permute_inputs(inputs: AlignmentInputs, order: Tensor) -> AlignmentInputs:
    """The same batch in another order (for permutation-invariance checks)."""
    i, t, b = inputs.image, inputs.text, inputs.batch
    pick = lambda x: None if x is None else x[order]  # noqa: E731  (the optional encoder outputs)
    image = ImageFeatures(i.global_emb[order], i.patch_emb[order], i.grid, i.global_feat[order], i.patch_feat[order],
                          pick(i.cls_attention))
    text = TextFeatures(t.global_emb[order], t.word_emb[order], t.word_mask[order], t.sentence_emb[order],
                        t.sentence_mask[order], t.word_sentence[order], pick(t.cls_attention), pick(t.piece_word))
    batch = Batch(b.images[order], b.input_ids[order], b.attention_mask[order], b.sentence_index[order],
                  b.labels[order], b.index[order])
    return AlignmentInputs(image, text, batch, inputs.progress)
