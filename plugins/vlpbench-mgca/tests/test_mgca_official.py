"""MGCA against a per-sample float64 port of the official code (HKU-MedAI/MGCA,
``mgca/models/mgca/mgca_module.py``: ITA 101-109, CTA 119-227 with the importance weights 140-153
and 193-205, CPA 229-262, Sinkhorn 266-291; token attention aggregation
``mgca/models/backbones/encoder.py:307-376``), on ragged reports: loss and gradients within 1e-6,
and ``preset: mgca``'s total against the official total (λ = 1, 1, 1)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from vlpbench.plugin_api import (AlignmentInputs, Batch, BuildContext, DirectionAdjustment, ImageFeatures, Positives,
                                 aggregate, piece_words)
from vlpbench.devkit.testing import feature_inputs
from vlpbench.devkit.testing_official import (CORPUS, assert_close_gradients, build_preset, gradients, piece_ids,
                                       preset_config, ragged_step)
from vlpbench_mgca.cta import TokenAlignment, clipped_weights
from vlpbench_mgca.ita import InstanceAlignment
from vlpbench_mgca.prototypes import PrototypeAlignment, sinkhorn

NONE = DirectionAdjustment()


# ---- the official code, ported ------------------------------------------------------------------

def official_ita(img_emb: Tensor, report_emb: Tensor, tau: float = 0.07) -> Tensor:
    """mgca_module.py:86-109 (embeddings normalised at 86-99)."""
    img_emb, report_emb = F.normalize(img_emb, dim=-1), F.normalize(report_emb, dim=-1)
    bz = img_emb.size(0)
    labels = torch.arange(bz).type_as(report_emb).long()
    scores = img_emb.mm(report_emb.t()) / tau
    return F.cross_entropy(scores, labels) + F.cross_entropy(scores.transpose(0, 1), labels)


def official_word_attention(attention: Tensor) -> Tensor:
    """aggregate_tokens' zip (encoder.py:320,329,382): tokens from position 0 zipped with the attention
    from position 1; the result keeps positions 1… . One zero column stands for the padding the official
    112-token width has beyond this batch's longest report."""
    extended = torch.cat([attention, attention.new_zeros(attention.shape[0], 1)], dim=1)
    out = []
    for b in range(attention.shape[0]):
        aggregated = [a for _, a in zip(range(extended.shape[1]), extended[b, 1:])]
        out.append(torch.stack(aggregated)[: attention.shape[1]])
    return torch.stack(out)[:, 1:]


def official_aggregate_tokens(embeddings: Tensor, words: list[str], last_attention: Tensor,
                              official_alignment: bool) -> tuple[Tensor, Tensor, list[str]]:
    """encoder.py:307-376 for one report: word pieces (``##``) summed into words with their [CLS]
    attention, [CLS] and [SEP] words of their own, stop at [SEP], zero padding ("[PAD]"). The official
    zip pairs token t with the attention of token t+1 (``last_attention`` starts at token 1, line 382);
    ``official_alignment=False`` pairs each token with its own."""
    attention = torch.cat([last_attention[1:], last_attention.new_zeros(1)]) if official_alignment else last_attention
    agg_embs, agg_atten, agg_words = [], [], []
    token_bank, word_bank, atten_bank = [], [], []
    for word_emb, word, attn in zip(embeddings, words, attention):
        if word == "[SEP]":
            agg_embs.append(torch.stack(token_bank).sum(0))
            agg_words.append("".join(word_bank))
            agg_atten.append(sum(atten_bank))
            agg_embs.append(word_emb)
            agg_words.append(word)
            agg_atten.append(attn)
            break
        if not word.startswith("##"):
            if word_bank:
                agg_embs.append(torch.stack(token_bank).sum(0))
                agg_words.append("".join(word_bank))
                agg_atten.append(sum(atten_bank))
            token_bank, word_bank, atten_bank = [word_emb], [word], [attn]
        else:
            token_bank.append(word_emb)
            word_bank.append(word[2:])
            atten_bank.append(attn)
    pad = embeddings.shape[0] - len(agg_embs)
    embs = torch.cat([torch.stack(agg_embs), embeddings.new_zeros(pad, embeddings.shape[1])])
    atten = torch.cat([torch.stack(agg_atten), last_attention.new_zeros(pad)])
    return embs, atten, agg_words + ["[PAD]"] * pad


def official_clip(atten_weights: Tensor, nonzero_only: bool) -> Tensor:
    """mgca_module.py:140-153 (words, non-zero entries) and 196-205 (ViT patches, all entries)."""
    with torch.no_grad():
        atten_weights = atten_weights.detach().clone()
        weights = []
        for i in range(atten_weights.shape[0]):
            atten_weight = atten_weights[i]
            if nonzero_only:
                nonzero = atten_weight.nonzero().squeeze()
                low = torch.quantile(atten_weight[nonzero], 0.1)
                high = torch.quantile(atten_weight[nonzero], 0.9)
                atten_weight[nonzero] = atten_weight[nonzero].clip(low, high)
            else:
                low, high = torch.quantile(atten_weight, 0.1), torch.quantile(atten_weight, 0.9)
                atten_weight = atten_weight.clip(low, high)
            weights.append(atten_weight.clone())
        weights = torch.stack(weights)
    return weights / weights.sum(dim=1, keepdim=True)


def official_cta(word_emb: Tensor, patch_emb: Tensor, mask: Tensor, word_weights: Tensor, patch_weights: Tensor | None,
                 vit: bool, tau: float = 0.1) -> Tensor:
    """mgca_module.py:119-227, use_local_atten False, bidirectional True; mask True at padding."""
    word_emb, patch_emb = F.normalize(word_emb, dim=-1), F.normalize(patch_emb, dim=-1)
    bz = word_emb.size(0)
    atten_sim = torch.bmm(word_emb, patch_emb.permute(0, 2, 1))
    atten_scores = F.softmax(atten_sim / tau, dim=-1)
    word_atten_output = F.normalize(torch.bmm(atten_scores, patch_emb), dim=-1)
    word_sim = torch.bmm(word_emb, word_atten_output.permute(0, 2, 1)) / tau
    word_num = word_sim.size(1)
    word_sim_1 = word_sim.reshape(bz * word_num, word_num)  # "b n1 n2 -> (b n1) n2"
    targets = torch.arange(word_num).long().repeat(bz)
    loss_word_1 = torch.sum(F.cross_entropy(word_sim_1, targets, reduction="none") * word_weights.reshape(-1)) / bz
    word_sim_2 = word_sim.permute(0, 2, 1).reshape(bz * word_num, word_num)  # "b n1 n2 -> (b n2) n1"
    loss_word_2 = torch.sum(F.cross_entropy(word_sim_2, targets, reduction="none") * word_weights.reshape(-1)) / bz
    loss_word = (loss_word_1 + loss_word_2) / 2.0
    atten_sim = torch.bmm(patch_emb, word_emb.permute(0, 2, 1))
    patch_num = patch_emb.size(1)
    atten_sim = atten_sim.masked_fill(mask.unsqueeze(1).repeat(1, patch_num, 1), float("-inf"))
    atten_scores = F.softmax(atten_sim / tau, dim=-1)
    patch_atten_output = torch.bmm(atten_scores, word_emb)
    if not vit:
        patch_atten_output = F.normalize(patch_atten_output, dim=-1)
        patch_weights = torch.ones(bz, patch_num, dtype=word_emb.dtype) / patch_num
    patch_sim = torch.bmm(patch_emb, patch_atten_output.permute(0, 2, 1)) / tau
    targets = torch.arange(patch_num).long().repeat(bz)
    patch_sim_1 = patch_sim.reshape(bz * patch_num, patch_num)
    loss_patch_1 = torch.sum(F.cross_entropy(patch_sim_1, targets, reduction="none") * patch_weights.reshape(-1)) / bz
    patch_sim_2 = patch_sim.permute(0, 2, 1).reshape(bz * patch_num, patch_num)
    loss_patch_2 = torch.sum(F.cross_entropy(patch_sim_2, targets, reduction="none") * patch_weights.reshape(-1)) / bz
    return (loss_patch_1 + loss_patch_2) / 2.0 + loss_word


def official_sinkhorn(Q: Tensor, nmb_iters: int) -> Tensor:
    """mgca_module.py:266-291 (single process)."""
    with torch.no_grad():
        Q = Q.clone()
        Q /= torch.sum(Q)
        K, B = Q.shape
        r, c = torch.ones(K) / K, torch.ones(B) / B
        for _ in range(nmb_iters):
            u = torch.sum(Q, dim=1)
            Q *= (r / u).unsqueeze(1)
            Q *= (c / torch.sum(Q, dim=0)).unsqueeze(0)
        return (Q / torch.sum(Q, dim=0, keepdim=True)).t().float()


def official_cpa(img_emb: Tensor, report_emb: Tensor, prototype: torch.nn.Linear) -> Tensor:
    """mgca_module.py:229-262."""
    img_emb, report_emb = F.normalize(img_emb, dim=-1), F.normalize(report_emb, dim=-1)
    with torch.no_grad():
        w = F.normalize(prototype.weight.data.clone(), dim=1, p=2)
        prototype.weight.copy_(w)
    img_proto_out, report_proto_out = prototype(img_emb), prototype(report_emb)
    with torch.no_grad():
        img_code = official_sinkhorn(torch.exp(img_proto_out.detach() / 0.05).t(), 3)
        report_code = official_sinkhorn(torch.exp(report_proto_out.detach() / 0.05).t(), 3)
    img_proto_prob = F.softmax(img_proto_out / 0.2, dim=1)
    report_proto_prob = F.softmax(report_proto_out / 0.2, dim=1)
    loss_i2t = -torch.mean(torch.sum(img_code * torch.log(report_proto_prob), dim=1))
    loss_t2i = -torch.mean(torch.sum(report_code * torch.log(img_proto_prob), dim=1))
    return (loss_i2t + loss_t2i) / 2.0


# ---- helpers ---------------------------------------------------------------------------------------

def ragged_tokens(generator: torch.Generator, batch: int, width: int, dim: int):
    """Token features [B, width, D] with [CLS] at 0, 1…width−2 words, then [SEP], then padding; a [CLS]
    attention row (softmax over the real tokens, 0 at padding)."""
    lengths = torch.randint(1, width - 1, (batch,), generator=generator)
    attention_mask = (torch.arange(width)[None] <= (lengths + 1)[:, None]).long()  # [CLS] + words + [SEP]
    tokens = torch.randn(batch, width, dim, generator=generator, dtype=torch.float64).requires_grad_()
    raw = torch.randn(batch, width, generator=generator, dtype=torch.float64).masked_fill(attention_mask == 0, -torch.inf)
    return tokens, attention_mask, torch.softmax(raw, dim=1)


def cta_inputs(tokens, attention_mask, patches, text_attention=None, image_attention=None) -> AlignmentInputs:
    inputs = feature_inputs(words=tokens, patches=patches, grid=(patches.shape[1], 1), dtype=torch.float64)
    inputs.batch.attention_mask = attention_mask
    inputs.text.cls_attention = text_attention
    inputs.image.cls_attention = image_attention
    return inputs


class FakeEncoder:
    def __init__(self, is_vit: bool) -> None:
        self.is_vit = is_vit


def head(vit: bool, **params) -> TokenAlignment:
    return TokenAlignment(TokenAlignment.Params(**params), BuildContext(built={"image_encoder": FakeEncoder(vit)}))


def assert_same_value_and_gradients(ours: Tensor, official: Tensor, leaves: list[Tensor]) -> None:
    assert ours.item() == pytest.approx(official.item(), abs=1e-9)
    for a, b in zip(torch.autograd.grad(ours, leaves, retain_graph=True),
                    torch.autograd.grad(official, leaves, retain_graph=True)):
        assert (a - b).abs().max().item() <= 1e-6


# ---- tests -------------------------------------------------------------------------------------------

def test_ita_equals_the_official_instance_loss() -> None:
    generator = torch.Generator().manual_seed(0)
    image = torch.randn(6, 12, generator=generator, dtype=torch.float64).requires_grad_()
    text = torch.randn(6, 12, generator=generator, dtype=torch.float64).requires_grad_()
    ours = InstanceAlignment(InstanceAlignment.Params())(image, text, Positives.identity(6), NONE, NONE)
    assert_same_value_and_gradients(ours, official_ita(image, text), [image, text])


def test_importance_weights_equal_the_official_quantile_clipping() -> None:
    generator = torch.Generator().manual_seed(1)
    attention = torch.rand(5, 9, generator=generator, dtype=torch.float64)
    attention[:, 6:] = 0.0
    attention[2, 3:] = 0.0
    assert torch.allclose(clipped_weights(attention, nonzero_only=True), official_clip(attention, True), atol=1e-12)
    assert torch.allclose(clipped_weights(attention, nonzero_only=False), official_clip(attention, False), atol=1e-12)


@pytest.mark.parametrize("vit", [False, True])
@pytest.mark.parametrize("alignment", ["corrected", "official_off_by_one"])
def test_cta_equals_the_official_token_loss_on_ragged_reports(vit: bool, alignment: str) -> None:
    generator = torch.Generator().manual_seed(2 + vit)
    tokens, attention_mask, text_attention = ragged_tokens(generator, batch=5, width=8, dim=6)
    patches = torch.randn(5, 6, 6, generator=generator, dtype=torch.float64).requires_grad_()
    image_attention = torch.softmax(torch.randn(5, 6, generator=generator, dtype=torch.float64), 1) if vit else None
    inputs = cta_inputs(tokens, attention_mask, patches, text_attention, image_attention)
    ours = head(vit, word_alignment=alignment)(inputs)["local"]
    if alignment == "official_off_by_one":
        word_attention = official_word_attention(text_attention)
    else:
        word_attention = text_attention[:, 1:]
    word_weights = official_clip(word_attention, nonzero_only=True)
    patch_weights = official_clip(image_attention, nonzero_only=False) if vit else None
    official = official_cta(tokens[:, 1:], patches, attention_mask[:, 1:] == 0, word_weights, patch_weights, vit)
    assert_same_value_and_gradients(ours, official, [tokens, patches])


def test_the_off_by_one_gives_each_word_the_next_tokens_attention() -> None:
    attention = torch.tensor([[0.1, 0.2, 0.3, 0.4, 0.0]], dtype=torch.float64)  # [CLS] w1 w2 [SEP] [PAD]
    from vlpbench_mgca.cta import word_attention

    assert word_attention(attention, "corrected").tolist() == [[0.2, 0.3, 0.4, 0.0]]
    assert word_attention(attention, "official_off_by_one").tolist() == [[0.3, 0.4, 0.0, 0.0]]
    assert official_word_attention(attention).tolist() == [[0.3, 0.4, 0.0, 0.0]]


def test_without_attention_maps_the_weights_are_uniform_over_the_real_tokens() -> None:
    generator = torch.Generator().manual_seed(4)
    tokens, attention_mask, _ = ragged_tokens(generator, batch=4, width=7, dim=5)
    patches = torch.randn(4, 4, 5, generator=generator, dtype=torch.float64)
    ours = head(False)(cta_inputs(tokens, attention_mask, patches))["local"]
    nonpad = (attention_mask[:, 1:] > 0).double()
    official = official_cta(tokens[:, 1:], patches, attention_mask[:, 1:] == 0, nonpad / nonpad.sum(1, keepdim=True),
                            None, vit=False)
    assert ours.item() == pytest.approx(official.item(), abs=1e-9)


def test_sinkhorn_equals_the_official_one() -> None:
    generator = torch.Generator().manual_seed(5)
    q = torch.exp(torch.randn(7, 5, generator=generator, dtype=torch.float64) / 0.5)
    ours = sinkhorn(q, 3)
    assert torch.allclose(ours, official_sinkhorn(q, 3).double(), atol=1e-7)
    assert torch.allclose(ours.sum(1), torch.ones(5, dtype=torch.float64))


def test_cpa_equals_the_official_prototype_loss_and_normalises_the_prototypes() -> None:
    generator = torch.Generator().manual_seed(6)
    image = torch.randn(6, 16, generator=generator, dtype=torch.float64).requires_grad_()
    text = torch.randn(6, 16, generator=generator, dtype=torch.float64).requires_grad_()
    component = PrototypeAlignment(PrototypeAlignment.Params(num_prototypes=20), BuildContext(embed_dim=16)).double()
    reference = torch.nn.Linear(16, 20, bias=False).double()
    reference.weight.data.copy_(component.prototypes.weight.data)
    inputs = feature_inputs(image, text, dtype=torch.float64, progress=0.5)
    ours = component(inputs)["proto"]
    official = official_cpa(image, text, reference)
    assert torch.allclose(component.prototypes.weight.norm(dim=1), torch.ones(20, dtype=torch.float64))
    assert ours.item() == pytest.approx(official.item(), abs=1e-6)  # official codes are cast to float32
    leaves_ours = [image, text, component.prototypes.weight]
    grads_ours = torch.autograd.grad(ours, leaves_ours)
    grads_official = torch.autograd.grad(official, [image, text, reference.weight])
    for a, b in zip(grads_ours, grads_official):
        assert (a - b).abs().max().item() <= 1e-6


def test_prototypes_are_frozen_during_the_first_part_of_the_run() -> None:
    component = PrototypeAlignment(PrototypeAlignment.Params(num_prototypes=8, frozen_until=0.1), BuildContext(embed_dim=4))
    image = torch.randn(4, 4, requires_grad=True)
    early = component(feature_inputs(image, progress=0.05))["proto"]
    early.backward()
    assert component.prototypes.weight.grad is None  # frozen: no gradient at all
    assert image.grad.abs().sum() > 0  # the encoders still learn
    component(feature_inputs(image, progress=0.2))["proto"].backward()
    assert component.prototypes.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("alignment", ["corrected", "official_off_by_one"])
def test_cta_with_word_pieces_summed_equals_the_official_aggregate_tokens(alignment: str) -> None:
    """Pieces summed into words and their attention summed per word (after the off-by-one shift when
    asked), as the official ``aggregate_tokens``, then the official CTA on the aggregated words."""
    generator = torch.Generator().manual_seed(9)
    names = [["[CLS]", "heart", "##s", "are", "big", "##ger", "[SEP]", "[PAD]"],
             ["[CLS]", "no", "effusion", "##s", "[SEP]", "[PAD]", "[PAD]", "[PAD]"],
             ["[CLS]", "lung", "##s", "##x", "clear", "[SEP]", "[PAD]", "[PAD]"],
             ["[CLS]", "ok", "[SEP]", "[PAD]", "[PAD]", "[PAD]", "[PAD]", "[PAD]"]]
    vocabulary = sorted({n for row in names for n in row})
    ids = torch.tensor([[vocabulary.index(n) for n in row] for row in names])
    attention_mask = (ids != vocabulary.index("[PAD]")).long()
    continuation = torch.tensor([n.startswith("##") for n in vocabulary])
    slots = piece_words(ids, attention_mask, continuation)
    pieces = torch.randn(4, 8, 6, generator=generator, dtype=torch.float64).requires_grad_()
    patches = torch.randn(4, 5, 6, generator=generator, dtype=torch.float64).requires_grad_()
    raw = torch.randn(4, 8, generator=generator, dtype=torch.float64).masked_fill(attention_mask == 0, -torch.inf)
    text_attention = torch.softmax(raw, dim=1)
    inputs = cta_inputs(aggregate(pieces, slots, "sum"), attention_mask, patches, text_attention, None)
    inputs.text.piece_word = slots
    ours = head(False, word_alignment=alignment)(inputs)["local"]
    rows = [official_aggregate_tokens(pieces[b], names[b], text_attention[b], alignment == "official_off_by_one")
            for b in range(4)]
    words = torch.stack([r[0] for r in rows])[:, 1:]
    weights = official_clip(torch.stack([r[1] for r in rows])[:, 1:], nonzero_only=True)
    pad = torch.tensor([[w == "[PAD]" for w in r[2][1:]] for r in rows])
    official = official_cta(words, patches, pad, weights, None, vit=False)
    assert_same_value_and_gradients(ours, official, [pieces, patches])


def test_importance_uniform_requests_nothing_and_ignores_the_attention() -> None:
    assert head(True).feature_requests == {"text:cls_attention", "image:cls_attention"}
    assert head(True, importance="uniform").feature_requests == frozenset()
    assert "importance" not in TokenAlignment.Params().model_dump()  # the default stays out of the identity
    generator = torch.Generator().manual_seed(10)
    tokens, attention_mask, text_attention = ragged_tokens(generator, batch=3, width=6, dim=4)
    patches = torch.randn(3, 4, 4, generator=generator, dtype=torch.float64)
    with_attention = cta_inputs(tokens, attention_mask, patches, text_attention, None)
    uniform = head(False, importance="uniform")(with_attention)["local"]
    assert uniform.item() == pytest.approx(head(False)(cta_inputs(tokens, attention_mask, patches))["local"].item())
    assert uniform.item() != pytest.approx(head(False)(with_attention)["local"].item())


def test_mgca_preset_total_equals_the_official_total_on_ragged_reports() -> None:
    dim, grid = 16, (2, 2)
    context = BuildContext(embed_dim=dim, image_size=16, patch_grid=grid, corpus=CORPUS)
    config = preset_config("mgca")
    modules = build_preset(config, context)
    assert [t.label for t in modules.objective.scheduled] == ["mgca.cta", "mgca.prototypes"]
    prototype = modules.objective.scheduled[1].module.prototypes
    reference = torch.nn.Linear(dim, 500, bias=False).double()
    generator = torch.Generator().manual_seed(7)
    for _ in range(2):
        step = ragged_step(generator, batch=5, hidden=32, dim=dim, patches=4, image_size=16, corpus_size=len(CORPUS))
        ids = piece_ids(modules.text, step, generator)  # the preset sums word pieces into words
        raw = torch.randn(step.attention_mask.shape, generator=generator, dtype=torch.float64)
        text_attention = torch.softmax(raw.masked_fill(step.attention_mask == 0, -torch.inf), dim=1)
        text = modules.text.features(step.hidden, step.attention_mask, step.sentence_index, input_ids=ids,
                                     cls_attention=text_attention)
        image = ImageFeatures(step.image_global, step.patches, grid, step.image_global, step.patches)
        batch = Batch(step.images, ids, step.attention_mask, step.sentence_index,
                      torch.zeros(5, 2, dtype=torch.float64), step.index)
        reference.weight.data.copy_(prototype.weight.data)
        ours = modules.objective(AlignmentInputs(image, text, batch, 0.5))
        assert set(ours.terms) == {"global", "mgca.cta/local", "mgca.prototypes/proto"}
        vocabulary = modules.text._tokenizer
        rows = [official_aggregate_tokens(step.hidden[b], [vocabulary.id_to_token(int(i)) for i in ids[b]],
                                          text_attention[b], official_alignment=False) for b in range(5)]
        assert sum(r[2].count("[PAD]") for r in rows) > sum(int((m == 0).sum()) for m in step.attention_mask)
        words = modules.text.local_proj(torch.stack([r[0] for r in rows]))[:, 1:]
        weights = official_clip(torch.stack([r[1] for r in rows])[:, 1:], nonzero_only=True)
        pad = torch.tensor([[w == "[PAD]" for w in r[2][1:]] for r in rows])
        official = (official_ita(step.image_global, text.global_emb)
                    + official_cta(words, step.patches, pad, weights, None, False)
                    + official_cpa(step.image_global, text.global_emb, reference))
        assert ours.total.item() == pytest.approx(official.item(), abs=1e-6)
        named = gradients(ours.total, step, modules)
        theirs = gradients(official, step, modules)
        theirs["objective.scheduled.1.module.prototypes.weight"] = torch.autograd.grad(official, reference.weight,
                                                                                        retain_graph=True)[0]
        assert_close_gradients(named, theirs)


def test_a_report_without_tokens_after_cls_leaves_its_patch_side_out_and_stays_finite() -> None:
    generator = torch.Generator().manual_seed(8)
    tokens = torch.randn(3, 4, 5, generator=generator, dtype=torch.float64).requires_grad_()
    patches = torch.randn(3, 4, 5, generator=generator, dtype=torch.float64).requires_grad_()
    attention_mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]])
    ours = head(False)(cta_inputs(tokens, attention_mask, patches))["local"]
    ours.backward()
    assert torch.isfinite(ours) and torch.isfinite(tokens.grad).all() and torch.isfinite(patches.grad).all()
    assert patches.grad[1].abs().max() < 1e-12  # sample 1 contributes nothing: no word weights, no patch side
