"""``preset: fane`` against a per-sample port of the official code (Aventador8/FaNe), float64.

Every term of the preset's total (L_mp, L_hn, L_tc, L_spa) with the global report vector from the
sentence attention pool, and the gradients (hidden states, patches, image vectors, every
parameter), must equal the port within 1e-6 on ragged batches over several steps (the EMA o* of
the adaptive normalisation starts at the first batch and moves from there).

Official files (under ``codes/fane/``): ``models/fane.py`` (Fane), ``utils/semantic_similarity.py``
(SemanticSimilarityNormalizer), ``modules/sparse_local_attention.py`` (SparseLocalCrossAttention),
``modules/sentence_pool.py``, ``modules/gather.py``. The frozen report encoder (Bio_ClinicalBERT's
pooler output, ``fane.py:169-180``) is the miner's report-vector module on both sides.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from vlpbench.plugin_api import BuildContext
from vlpbench.devkit.testing_official import (CORPUS, assert_close_gradients, build_preset, gradients,
                                       official_sentence_pool, official_sentence_stacks, plugin_step, preset_config,
                                       ragged_step)


class OfficialNormalizer:
    """SemanticSimilarityNormalizer(alpha=0.05, eps=1e-6), semantic_similarity.py:4-36."""

    def __init__(self) -> None:
        self.alpha, self.eps, self.o_star = 0.05, 1e-6, None

    def normalize_similarity(self, report_feats: Tensor) -> Tensor:
        r = F.normalize(report_feats, p=2, dim=-1)  # :29
        S = torch.matmul(r, r.T)  # :30
        p_b = F.normalize(report_feats, dim=-1).mean(dim=0, keepdim=True)  # compute_batch_o_star, :11-18
        o_star_batch = F.cosine_similarity(r, p_b, dim=-1).mean()
        if self.o_star is None:  # update_ema, :20-25
            self.o_star = o_star_batch.detach()
        else:
            self.o_star = self.alpha * o_star_batch.detach() + (1 - self.alpha) * self.o_star
        return ((S - self.o_star) / (1 - self.o_star + self.eps)).detach()  # :35-36


def official_sparse_attention(att, image_embedding: Tensor, text_embedding: Tensor):
    """SparseLocalCrossAttention.forward(sparse=True), sparse_local_attention.py:34-87 (the plugin's weights:
    query/key/value, mask MLP = mask_hidden–ReLU–mask_out, out_project = out)."""
    seq_len_image, seq_len_text = image_embedding.shape[0], text_embedding.shape[0]
    text_query, image_key, image_value = att.query(text_embedding), att.key(image_embedding), att.value(image_embedding)
    text_expanded = text_query.unsqueeze(1).expand(seq_len_text, seq_len_image, -1)  # :53-55
    image_expanded = image_key.unsqueeze(0).expand(seq_len_text, seq_len_image, -1)
    qk_concat = torch.cat([text_expanded, image_expanded], dim=-1)
    sparse_mask = torch.sigmoid(att.mask_out(F.relu(att.mask_hidden(qk_concat))).squeeze(-1))  # :56-57
    attention_scores = (text_query @ image_key.T) * sparse_mask / math.sqrt(att.dim)  # :60-64
    context_layer = att.out(torch.sigmoid(attention_scores) @ image_value)  # :69-73
    return context_layer, torch.mean(torch.abs(sparse_mask))  # get_loss_sparsity, :84-87


def official_local_loss(embed_a: Tensor, embed_b: Tensor) -> Tensor:
    """Fane.local_loss_fn, fane.py:267-283 (τ = local_logit_scale 0.07)."""
    embed_a, embed_b = F.normalize(embed_a, dim=-1, p=2), F.normalize(embed_b, dim=-1, p=2)
    labels = torch.arange(embed_b.size(0)).long()
    logits_per_image = embed_b @ embed_a.t() / 0.07
    logits_per_text = embed_a @ embed_b.t() / 0.07
    return (F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_text, labels)) / 2


def official_step(modules, normalizer: OfficialNormalizer, step) -> dict[str, Tensor]:
    """Fane.training_step, fane.py:373-423: every term of loss_dict['loss']."""
    text, objective = modules.text, modules.objective
    threshold = 0.95
    report_feats = objective.miner.reports(step.index)  # the frozen report encoder's output, :169-180
    scores = normalizer.normalize_similarity(report_feats)  # getTextSoftTarget, :177-180
    scores.fill_diagonal_(threshold + 1.0)
    local_text_embed = text.local_proj(step.hidden)  # encode_text, :163-167 (not normalised)
    stacks = official_sentence_stacks(local_text_embed, step.sentence_index)  # :397
    global_text_embed = torch.cat([official_sentence_pool(text.sentence_pool, s.unsqueeze(0)) for s in stacks])  # :325-329
    # local_alignment_loss, :287-319
    att = objective.scheduled[0].module.attention
    total_text_loss, total_regular = 0.0, 0.0
    for idx in range(len(stacks)):
        context, regular = official_sparse_attention(att, step.patches[idx], stacks[idx])
        total_text_loss = total_text_loss + official_local_loss(stacks[idx], context)
        total_regular = total_regular + regular
    # global_alignment_and_intra_modality_loss, :201-264
    f_img, f_txt = F.normalize(step.image_global, dim=-1), F.normalize(global_text_embed, dim=-1)
    logits_i2t = f_img @ f_txt.T / 0.1
    logits_text, logits_image = f_txt @ f_txt.T / 0.07, f_img @ f_img.T / 0.07
    batch_size = logits_i2t.size(0)
    intra_loss = 0.0
    for layer, score in enumerate(scores):  # :220-239
        neg_indices = (~(score > threshold)).nonzero(as_tuple=True)[0]
        neg_text, neg_image = logits_text[layer][neg_indices], logits_image[layer][neg_indices]
        loss_text = torch.sum(torch.softmax(neg_text / 0.07, dim=-1) * neg_text)
        loss_image = torch.sum(torch.softmax(neg_image / 0.07, dim=-1) * neg_image)
        intra_loss = intra_loss + (loss_text + loss_image) / 2
    sigmoid = objective.global_loss  # tau (init log(1/0.07)) and beta (init −10), :90-91
    M = torch.ones((batch_size, batch_size), dtype=f_img.dtype) * -1  # :242-244
    M[scores > threshold] = 1
    A = M * (-logits_i2t * sigmoid.scale + sigmoid.bias)  # :247
    return {"global": torch.sum(F.softplus(A)) / batch_size, "intra": intra_loss / batch_size,
            "local": total_text_loss / batch_size, "sparse": total_regular / batch_size}


def test_fane_preset_equals_the_official_code_over_several_steps() -> None:
    dim, grid = 128, (2, 2)  # the official embed_dim (fane.py:29) is the TCSAP width D
    context = BuildContext(embed_dim=dim, image_size=16, patch_grid=grid, corpus=CORPUS)
    modules = build_preset(preset_config("fane"), context)
    assert modules.text.params.pooling == "sentence_attention" and modules.text.sentence_pool.heads == 8
    normalizer = OfficialNormalizer()
    generator = torch.Generator().manual_seed(3)
    mined = 0
    for _ in range(3):
        step = ragged_step(generator, batch=6, hidden=32, dim=dim, patches=4, image_size=16, corpus_size=len(CORPUS))
        ours = plugin_step(modules, step, grid, progress=0.5)
        official = official_step(modules, normalizer, step)
        t = ours.terms
        assert set(t) == {"global", "fane.hard_negative/hn", "fane.tcsap/tc", "fane.tcsap/spa"}
        for mine, theirs in (("global", "global"), ("fane.hard_negative/hn", "intra"), ("fane.tcsap/tc", "local"),
                             ("fane.tcsap/spa", "sparse")):
            assert t[mine].item() == pytest.approx(official[theirs].item(), abs=1e-9), mine
        official_total = sum(official.values())
        assert ours.total.item() == pytest.approx(official_total.item(), abs=1e-6)
        assert_close_gradients(gradients(ours.total, step, modules), gradients(official_total, step, modules))
        mined += ours.stats["mined_positives"] > 0
    assert mined  # the duplicated report was mined as a positive in some step
