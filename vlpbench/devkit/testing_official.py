"""Shared set-up for the plugins' official-code reference tests (``preset`` = official port).

A preset is resolved exactly as an experiment variant resolves it (``resolve_variant``), its text
encoder is built on a tiny corpus, and its objective is built from the registry. A step is fed
ragged random inputs after the transformer: hidden states [B,M,H] with a sentence index per token
(−1 for [CLS], [SEP] and padding), patch tokens and global image vectors, all float64, so the
plugin path (``BertTextEncoder.features`` + ``Objective``) and a per-sample port of the official
code can be compared term by term, with gradients.

Used by the tests of the method plugins shipped in this repository; unlike :mod:`vlpbench.plugin_api`
and :mod:`vlpbench.devkit.testing` it builds on internals (the config resolver, the built-in BERT, the
objective), so its names may change with them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from vlpbench.config.loader import resolve_variant
from vlpbench.config.schema import RunConfig
from vlpbench.core.context import BuildContext
from vlpbench.core.features import AlignmentInputs, Batch, ImageFeatures
from vlpbench.models.text_bert import BertTextEncoder
from vlpbench.objective.objective import Objective
from vlpbench.core.plugins import get_registry

__all__ = ["CORPUS", "preset_config", "PresetModules", "build_preset", "RaggedStep", "ragged_step", "piece_ids",
           "plugin_step", "official_sentence_stacks", "official_sentence_pool", "gradients", "assert_close_gradients"]

CORPUS = [
    "The heart is enlarged. No effusion. Lungs are clear.",
    "No acute cardiopulmonary process.",
    "Small left pleural effusion. Mild cardiomegaly.",
    "No acute cardiopulmonary process.",
    "Right lower lobe opacity. Possible pneumonia. No pneumothorax.",
    "The lungs are clear. No pneumothorax. Normal heart size.",
]


def preset_config(preset: str, **overrides: Any) -> RunConfig:
    """The run config of ``{preset: NAME, **overrides}`` on an otherwise default experiment."""
    return RunConfig.model_validate(resolve_variant({}, {"preset": preset, **overrides}, Path("<test>"), "test"))


@dataclass
class PresetModules:
    text: BertTextEncoder
    objective: Objective
    context: BuildContext


def build_preset(config: RunConfig, context: BuildContext) -> PresetModules:
    """The preset's text encoder (tiny BERT, its pooling and sentence settings) and objective, float64, train mode."""
    torch.manual_seed(0)
    params = {**config.model.text_encoder.params(), "layers": 1, "hidden": 32, "heads": 2, "vocab_size": 200}
    text = BertTextEncoder(BertTextEncoder.Params(**params), context)
    objective = Objective(config.objective, get_registry(), context)
    return PresetModules(text.double().train(), objective.double().train(), context)


@dataclass
class RaggedStep:
    hidden: Tensor  # [B,M,H], requires grad
    attention_mask: Tensor  # [B,M]
    sentence_index: Tensor  # [B,M], −1 for special tokens and padding
    counts: list[int]  # sentences per report
    image_global: Tensor  # [B,D], requires grad
    patches: Tensor  # [B,N,D], requires grad
    images: Tensor  # [B,1,S,S]
    index: Tensor  # [B] sample indices into the corpus


def ragged_step(generator: torch.Generator, batch: int, hidden: int, dim: int, patches: int, image_size: int,
                corpus_size: int, max_sentences: int = 4) -> RaggedStep:
    """Random inputs with 1..max_sentences sentences per report and 1..3 words per sentence."""
    counts = torch.randint(1, max_sentences + 1, (batch,), generator=generator).tolist()
    words = [torch.randint(1, 4, (c,), generator=generator).tolist() for c in counts]
    width = max(sum(w) for w in words) + 3
    index = torch.full((batch, width), -1, dtype=torch.long)
    attention = torch.zeros(batch, width, dtype=torch.long)
    for b, lengths in enumerate(words):
        position = 1  # [CLS] at 0
        for sentence, length in enumerate(lengths):
            index[b, position:position + length] = sentence
            position += length
        attention[b, :position + 1] = 1  # … and [SEP]
    rand = lambda *shape: torch.randn(*shape, generator=generator, dtype=torch.float64)  # noqa: E731
    return RaggedStep(rand(batch, width, hidden).requires_grad_(), attention, index, counts,
                      rand(batch, dim).requires_grad_(), rand(batch, patches, dim).requires_grad_(),
                      rand(batch, 1, image_size, image_size),
                      torch.randint(corpus_size, (batch,), generator=generator))


def piece_ids(text: BertTextEncoder, step: RaggedStep, generator: torch.Generator) -> Tensor:
    """Token ids for a ragged step's layout ([CLS], word tokens, [SEP], padding) from ``text``'s
    vocabulary, about half of the word tokens being continuation pieces (``##…``, never the first of
    a sentence), so that presets which aggregate word pieces (``word_pieces: sum``) meet real words."""
    cls_id, sep_id, pad_id = text._special_ids()
    continuation = text.continuation()
    starts = torch.nonzero(~continuation).flatten()
    starts = starts[~torch.isin(starts, torch.tensor([cls_id, sep_id, pad_id]))]
    pieces = torch.nonzero(continuation).flatten()
    pick = lambda pool, shape: pool[torch.randint(len(pool), shape, generator=generator)]  # noqa: E731
    ids = torch.where(torch.rand(step.sentence_index.shape, generator=generator) < 0.5,
                      pick(pieces, step.sentence_index.shape), pick(starts, step.sentence_index.shape))
    first = step.sentence_index != torch.nn.functional.pad(step.sentence_index[:, :-1], (1, 0), value=-1)
    ids = torch.where(first, pick(starts, step.sentence_index.shape), ids)
    ids = torch.where(step.sentence_index >= 0, ids, torch.full_like(ids, pad_id))
    ids[:, 0] = cls_id
    ids[torch.arange(len(ids)), step.attention_mask.sum(1) - 1] = sep_id
    return ids


def plugin_step(modules: PresetModules, step: RaggedStep, grid: tuple[int, int], progress: float,
                input_ids: Tensor | None = None, text_attention: Tensor | None = None):
    """The plugin path: text features from the hidden states (``input_ids`` where the preset
    aggregates word pieces; ``text_attention``: the encoder's [CLS] attention), then the objective."""
    text = modules.text.features(step.hidden, step.attention_mask, step.sentence_index, input_ids=input_ids,
                                 cls_attention=text_attention)
    image = ImageFeatures(step.image_global, step.patches, grid, step.image_global, step.patches)
    ids = torch.zeros_like(step.sentence_index) if input_ids is None else input_ids
    batch = Batch(step.images, ids, step.attention_mask, step.sentence_index,
                  torch.zeros(len(step.counts), 2, dtype=torch.float64), step.index)
    return modules.objective(AlignmentInputs(image, text, batch, progress))


def official_sentence_stacks(words: Tensor, sentence_index: Tensor) -> list[Tensor]:
    """SentenceGather 'avg' (FaNe modules/gather.py:56-73, CM-CGNS utils/gather.py:98-133): per report,
    the mean of the word tokens of each sentence (official indices start at 1: ours + 1)."""
    roi_mask = sentence_index + 1
    stacks = []
    for b in range(words.shape[0]):
        sentences = []
        for i in range(int(roi_mask[b].max())):
            aggregate = words[b][torch.where(roi_mask[b] == i + 1)[0], :]
            if aggregate.size(0) == 0:
                continue
            sentences.append(torch.mean(aggregate, dim=0, keepdim=True))
        stacks.append(torch.cat(sentences, dim=0))
    return stacks


def official_sentence_pool(pool, x: Tensor) -> Tensor:
    """SentenceAttentionPool.forward, pos_embed=False (FaNe modules/sentence_pool.py:17-43) on one report
    ``x`` [1,T,D] (the caller unsqueezes, models/fane.py:328); returns [1,D]."""
    x = x.permute(1, 0, 2)
    x = torch.cat([x.mean(dim=0, keepdim=True), x], dim=0)
    x, _ = torch.nn.functional.multi_head_attention_forward(
        query=x, key=x, value=x, embed_dim_to_check=x.shape[-1], num_heads=pool.heads,
        q_proj_weight=pool.q_proj.weight, k_proj_weight=pool.k_proj.weight, v_proj_weight=pool.v_proj.weight,
        in_proj_weight=None, in_proj_bias=torch.cat([pool.q_proj.bias, pool.k_proj.bias, pool.v_proj.bias]),
        bias_k=None, bias_v=None, add_zero_attn=False, dropout_p=0, out_proj_weight=pool.c_proj.weight,
        out_proj_bias=pool.c_proj.bias, use_separate_proj_weight=True, training=True, need_weights=False)
    return x[0]


def gradients(total: Tensor, step: RaggedStep, modules: PresetModules) -> dict[str, Tensor]:
    """d total / d (hidden states, image vectors, patches, every trainable parameter)."""
    named = {"hidden": step.hidden, "image_global": step.image_global, "patches": step.patches}
    named.update({f"text.{n}": p for n, p in modules.text.named_parameters()
                  if p.requires_grad and not n.startswith("bert.")})
    named.update({f"objective.{n}": p for n, p in modules.objective.named_parameters() if p.requires_grad})
    grads = torch.autograd.grad(total, list(named.values()), retain_graph=True, allow_unused=True)
    return {n: (torch.zeros_like(p) if g is None else g) for (n, p), g in zip(named.items(), grads)}


def assert_close_gradients(ours: dict[str, Tensor], official: dict[str, Tensor], atol: float = 1e-6) -> None:
    for name in ours:
        difference = (ours[name] - official[name]).abs().max().item()
        assert difference <= atol, f"d total / d {name} differs from the official port by {difference:.3g}"
