"""GLoRIA against a per-sample float64 port of the official loss (marshuang80/gloria,
``gloria/loss/gloria_loss.py``: ``attention_fn`` 19-57, ``global_loss`` 60-82, ``local_loss``
85-137; total ``gloria_model.py:77-80``), on ragged reports: loss and gradients within 1e-6."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from vlpbench.plugin_api import BuildContext, DirectionAdjustment, Positives
from vlpbench.devkit.testing import feature_inputs
from vlpbench.devkit.testing_official import (CORPUS, assert_close_gradients, build_preset, gradients, piece_ids,
                                       plugin_step, preset_config, ragged_step)
from vlpbench_gloria.local import GloriaLocal
from vlpbench_gloria.losses import GloriaGlobalLoss

NONE = DirectionAdjustment()


def official_cosine_similarity(x1: Tensor, x2: Tensor, dim: int = 1, eps: float = 1e-8) -> Tensor:
    """gloria_loss.py:11-16."""
    w12 = torch.sum(x1 * x2, dim)
    w1, w2 = torch.norm(x1, 2, dim), torch.norm(x2, 2, dim)
    return (w12 / (w1 * w2).clamp(min=eps)).squeeze()


def official_attention_fn(query: Tensor, context: Tensor, temp1: float) -> Tensor:
    """attention_fn, gloria_loss.py:19-57: query [B, D, L], context [B, D, h, w] → weighted context [B, D, L]."""
    batch_size, query_l = query.size(0), query.size(2)
    ih, iw = context.size(2), context.size(3)
    source_l = ih * iw
    context = context.view(batch_size, -1, source_l)
    context_t = torch.transpose(context, 1, 2).contiguous()
    attn = torch.bmm(context_t, query)  # [B, N, L]
    attn = attn.view(batch_size * source_l, query_l)
    attn = torch.nn.Softmax(dim=-1)(attn)
    attn = attn.view(batch_size, source_l, query_l)
    attn = torch.transpose(attn, 1, 2).contiguous()
    attn = attn.view(batch_size * query_l, source_l)
    attn = attn * temp1
    attn = torch.nn.Softmax(dim=-1)(attn)
    attn = attn.view(batch_size, query_l, source_l)
    attn_t = torch.transpose(attn, 1, 2).contiguous()
    return torch.bmm(context, attn_t)


def official_local_loss(img_features: Tensor, words_emb: Tensor, cap_lens: list[int],
                        temp1: float = 4.0, temp2: float = 5.0, temp3: float = 10.0) -> Tensor:
    """local_loss, gloria_loss.py:85-137 (agg 'sum'): img_features [B, D, h, w], words_emb [B, D, M]."""
    batch_size = img_features.shape[0]
    similarities = []
    for i in range(len(words_emb)):
        words_num = cap_lens[i]
        word = words_emb[i, :, :words_num].unsqueeze(0).contiguous()  # [1, D, L]
        word = word.repeat(batch_size, 1, 1)
        weighted = official_attention_fn(word, img_features, temp1)
        word = word.transpose(1, 2).contiguous().view(batch_size * words_num, -1)
        weighted = weighted.transpose(1, 2).contiguous().view(batch_size * words_num, -1)
        row_sim = official_cosine_similarity(word, weighted).view(batch_size, words_num)
        row_sim = torch.exp(row_sim * temp2).sum(dim=1, keepdim=True)
        similarities.append(torch.log(row_sim))
    similarities = torch.cat(similarities, 1) * temp3  # [images, reports]
    labels = torch.arange(batch_size)
    return F.cross_entropy(similarities, labels) + F.cross_entropy(similarities.t(), labels)


def official_global_loss(cnn_code: Tensor, rnn_code: Tensor, temp3: float = 10.0, eps: float = 1e-8) -> Tensor:
    """global_loss, gloria_loss.py:60-82."""
    batch_size = cnn_code.shape[0]
    labels = torch.arange(batch_size)
    cnn_code, rnn_code = cnn_code.unsqueeze(0), rnn_code.unsqueeze(0)
    cnn_code_norm = torch.norm(cnn_code, 2, dim=2, keepdim=True)
    rnn_code_norm = torch.norm(rnn_code, 2, dim=2, keepdim=True)
    scores0 = torch.bmm(cnn_code, rnn_code.transpose(1, 2))
    norm0 = torch.bmm(cnn_code_norm, rnn_code_norm.transpose(1, 2))
    scores0 = (scores0 / norm0.clamp(min=eps) * temp3).squeeze()
    return F.cross_entropy(scores0, labels) + F.cross_entropy(scores0.transpose(0, 1), labels)


def official_aggregate_tokens(embeddings: Tensor, words: list[str]) -> tuple[Tensor, list[str]]:
    """gloria/models/text_model.py:32-90 (agg "sum") for one report and one layer: a word is the sum of
    its pieces ("##" joins the previous one), [CLS] and [SEP] are words, the walk stops at [SEP], zero pads."""
    agg_embs, agg_words, token_bank, word_bank = [], [], [], []
    for word_emb, word in zip(embeddings, words):
        if word == "[SEP]":
            agg_embs.append(torch.stack(token_bank).sum(0))
            agg_words.append("".join(word_bank))
            agg_embs.append(word_emb)
            agg_words.append(word)
            break
        if not word.startswith("##"):
            if word_bank:
                agg_embs.append(torch.stack(token_bank).sum(0))
                agg_words.append("".join(word_bank))
            token_bank, word_bank = [word_emb], [word]
        else:
            token_bank.append(word_emb)
            word_bank.append(word[2:])
    pad = embeddings.shape[0] - len(agg_embs)
    return (torch.cat([torch.stack(agg_embs), embeddings.new_zeros(pad, embeddings.shape[1])]),
            agg_words + ["[PAD]"] * pad)


def to_official_layout(words: Tensor, mask: Tensor, patches: Tensor, grid: tuple[int, int]):
    """Our [B,M,D] words with a mask that is a prefix per report, [B,N,D] patches → GLoRIA's layouts."""
    cap_lens = mask.sum(1).tolist()
    assert all(bool(mask[b, :n].all()) for b, n in enumerate(cap_lens))  # words are a prefix
    img = patches.transpose(1, 2).reshape(patches.shape[0], patches.shape[2], *grid)
    return img, words.transpose(1, 2), cap_lens


@pytest.mark.parametrize("seed", [0, 1])
def test_local_head_equals_the_official_local_loss_on_ragged_words(seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    batch, dim, grid = 5, 8, (3, 2)
    words = torch.randn(batch, 7, dim, generator=generator, dtype=torch.float64).requires_grad_()
    patches = torch.randn(batch, 6, dim, generator=generator, dtype=torch.float64).requires_grad_()
    counts = torch.randint(1, 7, (batch,), generator=generator).tolist()  # real words after [CLS]
    inputs = feature_inputs(words=words, patches=patches, grid=grid, dtype=torch.float64)
    inputs.text.word_mask = (torch.arange(7)[None] >= 1) & (torch.arange(7)[None] <= torch.tensor(counts)[:, None])
    ours = GloriaLocal(GloriaLocal.Params())(inputs)["local"]
    mask = inputs.text.word_mask.clone()
    mask[:, 0] = True  # [CLS] + words
    official = official_local_loss(*to_official_layout(words, mask, patches, grid))
    assert ours.item() == pytest.approx(official.item(), abs=1e-9)
    for a, b in zip(torch.autograd.grad(ours, [words, patches]), torch.autograd.grad(official, [words, patches])):
        assert (a - b).abs().max().item() <= 1e-6


def test_tokens_option_drops_the_cls() -> None:
    generator = torch.Generator().manual_seed(2)
    words = torch.randn(3, 4, 6, generator=generator, dtype=torch.float64)
    patches = torch.randn(3, 4, 6, generator=generator, dtype=torch.float64)
    inputs = feature_inputs(words=words, patches=patches, dtype=torch.float64)
    inputs.text.word_mask = torch.tensor([[False, True, True, False], [False, True, False, False],
                                          [False, False, False, False]])  # report 2 has no word: its [CLS]
    ours = GloriaLocal(GloriaLocal.Params(words="tokens"))(inputs)["local"]
    shifted = torch.stack([words[0, 1:], words[1, 1:], words[2, :3]])  # words as a prefix
    official = official_local_loss(*to_official_layout(shifted, torch.tensor([[1, 1, 0], [1, 0, 0], [1, 0, 0]]).bool(),
                                                       patches, (2, 2)))
    assert ours.item() == pytest.approx(official.item(), abs=1e-9)


def test_one_region_gives_the_cosine_of_word_and_region_by_hand() -> None:
    """N = 1: every word attends fully to the one region, so R(j,i) = log Σ_l e^{5 cos(w_il, r_j)}."""
    words = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [1.0, 0.0]]], dtype=torch.float64)
    patches = torch.tensor([[[1.0, 0.0]], [[0.0, 2.0]]], dtype=torch.float64)
    inputs = feature_inputs(words=words, patches=patches, grid=(1, 1), dtype=torch.float64)
    inputs.text.word_mask = torch.tensor([[False, True], [False, True]])
    value = GloriaLocal(GloriaLocal.Params())(inputs)["local"].item()
    r = lambda cosines: math.log(sum(math.exp(5 * c) for c in cosines))  # noqa: E731
    sim = 10 * torch.tensor([[r([1, 0]), r([1, 1])], [r([0, 1]), r([0, 0])]], dtype=torch.float64)  # [image, report]
    expected = F.cross_entropy(sim, torch.arange(2)) + F.cross_entropy(sim.t(), torch.arange(2))
    assert value == pytest.approx(expected.item(), abs=1e-9)


def test_global_loss_equals_the_official_global_loss() -> None:
    generator = torch.Generator().manual_seed(3)
    image = torch.randn(6, 10, generator=generator, dtype=torch.float64).requires_grad_()
    text = torch.randn(6, 10, generator=generator, dtype=torch.float64).requires_grad_()
    ours = GloriaGlobalLoss(GloriaGlobalLoss.Params())(image, text, Positives.identity(6), NONE, NONE)
    official = official_global_loss(image, text)
    assert ours.item() == pytest.approx(official.item(), abs=1e-9)
    for a, b in zip(torch.autograd.grad(ours, [image, text]), torch.autograd.grad(official, [image, text])):
        assert (a - b).abs().max().item() <= 1e-6


def test_gloria_preset_total_equals_the_official_total_on_ragged_reports() -> None:
    dim, grid = 16, (2, 3)
    context = BuildContext(embed_dim=dim, image_size=16, patch_grid=grid, corpus=CORPUS)
    modules = build_preset(preset_config("gloria"), context)
    generator = torch.Generator().manual_seed(6)
    for _ in range(2):
        step = ragged_step(generator, batch=5, hidden=32, dim=dim, patches=6, image_size=16, corpus_size=len(CORPUS))
        ids = piece_ids(modules.text, step, generator)  # the preset sums word pieces into words
        ours = plugin_step(modules, step, grid, progress=0.0, input_ids=ids)
        assert set(ours.terms) == {"global", "gloria.local/local"}
        text = modules.text.features(step.hidden, step.attention_mask, step.sentence_index, input_ids=ids)
        vocabulary = modules.text._tokenizer
        rows = [official_aggregate_tokens(step.hidden[b], [vocabulary.id_to_token(int(i)) for i in ids[b]])
                for b in range(len(ids))]
        words = modules.text.local_proj(torch.stack([r[0] for r in rows]))
        # gloria_model.py:53-55: cap_len = [CLS] + the aggregated words not starting with "["
        cap_lens = [sum(not w.startswith("[") for w in r[1]) + 1 for r in rows]
        assert cap_lens == (text.word_mask.sum(1) + 1).tolist()
        assert sum(cap_lens) < int((step.sentence_index >= 0).sum()) + len(ids)  # some pieces were joined
        img = step.patches.transpose(1, 2).reshape(len(ids), step.patches.shape[2], *grid)
        official = (official_local_loss(img, words.transpose(1, 2), cap_lens)
                    + official_global_loss(step.image_global, text.global_emb))
        assert ours.total.item() == pytest.approx(official.item(), abs=1e-9)
        assert_close_gradients(gradients(ours.total, step, modules), gradients(official, step, modules))
