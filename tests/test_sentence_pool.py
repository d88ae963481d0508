"""The sentence attention pool (FaNe's and CM-CGNS's global report vector) and the text encoder's
``pooling`` / ``sentence_vectors`` settings.

The reference is a per-report port of the official pool in float64: FaNe
``codes/fane/modules/sentence_pool.py:17-43`` (identical to CM-CGNS
``cgns/models/cgns/utils/sentence_pool.py:17-43``), applied report by report as in FaNe
``models/fane.py:325-329`` / CM-CGNS ``cgns_module.py:295-300``.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vlpbench.core.context import BuildContext
from vlpbench.core.errors import ConfigError
from vlpbench.models.sentence_pool import SentenceAttentionPool
from vlpbench.models.text_bert import BertTextEncoder

CORPUS = ["The heart is enlarged. No effusion.", "The lungs are clear. No pneumothorax. Normal heart."]


def official_pool(pool: SentenceAttentionPool, sentences: torch.Tensor) -> torch.Tensor:
    """One report's [T,D] sentences → [D], as sentence_pool.py:17-43 computes it (pos_embed=False)."""
    x = sentences.unsqueeze(0).permute(1, 0, 2)  # :19  [T,1,D]
    x = torch.cat([x.mean(dim=0, keepdim=True), x], dim=0)  # :21  mean token first
    x, _ = F.multi_head_attention_forward(  # :24-42
        query=x, key=x, value=x, embed_dim_to_check=x.shape[-1], num_heads=pool.heads,
        q_proj_weight=pool.q_proj.weight, k_proj_weight=pool.k_proj.weight, v_proj_weight=pool.v_proj.weight,
        in_proj_weight=None, in_proj_bias=torch.cat([pool.q_proj.bias, pool.k_proj.bias, pool.v_proj.bias]),
        bias_k=None, bias_v=None, add_zero_attn=False, dropout_p=0, out_proj_weight=pool.c_proj.weight,
        out_proj_bias=pool.c_proj.bias, use_separate_proj_weight=True, training=True, need_weights=False)
    return x[0, 0]  # :43


def test_vectorised_pool_equals_the_official_per_report_pool_with_gradients() -> None:
    torch.manual_seed(0)
    pool = SentenceAttentionPool(16, heads=8).double()
    counts = [3, 1, 5, 2]
    sentences = torch.randn(4, 5, 16, dtype=torch.float64, requires_grad=True)
    mask = torch.arange(5).unsqueeze(0) < torch.tensor(counts).unsqueeze(1)
    padded = torch.where(mask.unsqueeze(-1), sentences, torch.full_like(sentences, 7.0))  # junk in the padding
    ours = pool(padded, mask)
    reference = torch.stack([official_pool(pool, sentences[b, :n]) for b, n in enumerate(counts)])
    assert torch.allclose(ours, reference, atol=1e-12)
    weights = torch.randn_like(ours)
    grads = torch.autograd.grad((ours * weights).sum(), [sentences, pool.q_proj.weight, pool.c_proj.bias])
    expected = torch.autograd.grad((reference * weights).sum(), [sentences, pool.q_proj.weight, pool.c_proj.bias])
    for got, want in zip(grads, expected):
        assert torch.allclose(got, want, atol=1e-12)


def test_pool_heads_must_divide_the_embedding_size() -> None:
    with pytest.raises(ConfigError, match="must divide the embedding size"):
        SentenceAttentionPool(12, heads=8)


def encoder(**params) -> BertTextEncoder:
    torch.manual_seed(0)
    base = dict(layers=1, hidden=32, heads=2, vocab_size=200)
    return BertTextEncoder(BertTextEncoder.Params(**base, **params), BuildContext(embed_dim=16, corpus=CORPUS))


def test_sentence_attention_pooling_shares_the_word_projection_and_has_no_global_projection() -> None:
    text = encoder(pooling="sentence_attention").eval()
    assert not hasattr(text, "global_proj")
    tokens = text.tokenize([["The heart is enlarged.", "No effusion."], ["The lungs are clear."]])
    out = text(tokens.input_ids, tokens.attention_mask, tokens.sentence_index)
    for b, n in enumerate([2, 1]):
        assert torch.allclose(out.global_emb[b], official_pool(text.sentence_pool, out.sentence_emb[b, :n]), atol=1e-5)
    out.global_emb.sum().backward()
    assert text.local_proj.weight.grad is not None and text.local_proj.weight.grad.abs().sum() > 0


def test_unit_word_mean_sentences_are_means_of_normalised_words_not_renormalised() -> None:
    text = encoder(sentence_vectors="unit_word_mean").eval()
    tokens = text.tokenize([["The heart is enlarged.", "No effusion."]])
    out = text(tokens.input_ids, tokens.attention_mask, tokens.sentence_index)
    first = tokens.sentence_index[0] == 0
    expected = F.normalize(out.word_emb[0][first], dim=-1).mean(0)  # cgns_module.py:375-377, gather.py:125
    assert torch.allclose(out.sentence_emb[0, 0], expected, atol=1e-6)
    assert out.sentence_emb[0, 0].norm() < 1.0


def test_new_text_settings_stay_out_of_the_resolved_config_at_their_defaults() -> None:
    dumped = BertTextEncoder.Params().model_dump(mode="json")
    assert "pool_heads" not in dumped and "sentence_vectors" not in dumped and dumped["pooling"] == "cls"
    changed = BertTextEncoder.Params(pooling="sentence_attention", sentence_vectors="unit_word_mean").model_dump()
    assert changed["sentence_vectors"] == "unit_word_mean"


def test_presets_refine_the_default_text_encoder_and_clip_keeps_cls() -> None:
    from vlpbench.devkit.testing_official import preset_config

    fane, cmcgns = preset_config("fane").model.text_encoder, preset_config("cmcgns").model.text_encoder
    assert fane.name == "bert" and fane.params() == {"pooling": "sentence_attention"}
    assert cmcgns.params() == {"pooling": "sentence_attention", "sentence_vectors": "unit_word_mean"}
    clip = preset_config("fane", **{"model.text_encoder.pooling": "cls"}).model.text_encoder  # a variant can undo it
    assert clip.params()["pooling"] == "cls"
    assert BertTextEncoder.Params().pooling == "cls"
