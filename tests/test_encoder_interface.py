"""The encoder interface the field's baselines need (issue 20): last-layer [CLS] attention (BERT, timm
ViT) on request only, the sum of the last k BERT layers, word-piece aggregation into words, and a
whole ResNet-50's layer3 as region features; defaults unchanged."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vlpbench.core.context import BuildContext
from vlpbench.core.errors import ConfigError
from vlpbench.models.image_timm import TimmImageEncoder
from vlpbench.models.requests import apply_feature_requests, collect_requests
from vlpbench.models.text_bert import BertTextEncoder
from vlpbench.models.word_pieces import aggregate, piece_words, slot_mask

CORPUS = ["The heart is enlarged. No effusion.", "The lungs are clear. No pneumothorax. Normal heart.",
          "Cardiomegaly with bibasilar atelectasis. Pneumothorax unchanged."]


def context(size: int = 32) -> BuildContext:
    return BuildContext(embed_dim=16, image_size=size, corpus=CORPUS)


def bert(**params) -> BertTextEncoder:
    torch.manual_seed(0)
    return BertTextEncoder(BertTextEncoder.Params(layers=3, hidden=32, heads=4, vocab_size=100, **params), context()).eval()


#: words the corpus never saw ("opacities", "hearts", …) are split into pieces
REPORTS = [["the hearts is enlarged.", "no effusions."], ["cardiomegaly, basilar opacities."], ["pneumothorax."]]


class Requesting(nn.Module):
    feature_requests = frozenset({"text:cls_attention", "image:cls_attention"})


def test_bert_cls_attention_equals_the_eager_last_layer_attention_and_only_on_request() -> None:
    encoder = bert()
    tokens = encoder.tokenize(REPORTS)
    plain = encoder(tokens.input_ids, tokens.attention_mask, tokens.sentence_index)
    assert plain.cls_attention is None  # nobody asked: not computed
    assert apply_feature_requests(Requesting(), nn.Identity(), encoder) == {"image": set(), "text": {"cls_attention"}}
    out = encoder(tokens.input_ids, tokens.attention_mask, tokens.sentence_index)
    encoder.bert.set_attn_implementation("eager")
    eager = encoder.bert(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask, output_attentions=True)
    expected = eager.attentions[-1][:, :, 0, :].mean(1)  # [CLS] row of the last layer, mean over the heads
    assert torch.allclose(out.cls_attention, expected, atol=1e-6)
    assert torch.all(out.cls_attention[tokens.attention_mask == 0] == 0)
    assert torch.allclose(out.cls_attention.sum(1), torch.ones(3), atol=1e-6)
    assert torch.equal(out.word_emb, plain.word_emb)  # the request changes no feature


def test_hidden_layers_sums_the_last_k_hidden_states() -> None:
    encoder = bert(hidden_layers=2)
    tokens = encoder.tokenize(REPORTS)
    out = encoder(tokens.input_ids, tokens.attention_mask, tokens.sentence_index)
    states = encoder.bert(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask,
                          output_hidden_states=True).hidden_states
    assert torch.allclose(out.word_emb, encoder.local_proj(states[-1] + states[-2]), atol=1e-6)
    with pytest.raises(ConfigError, match="hidden_layers = 5, but the text encoder has 3 layers"):
        bert(hidden_layers=5)


def official_aggregate(hidden: torch.Tensor, tokens: list[str]) -> torch.Tensor:
    """gloria/models/text_model.py:32-90 for one report: sum of pieces, [CLS]/[SEP] own words, stop at [SEP]."""
    words, current = [], []
    for vector, token in zip(hidden, tokens):
        if token == "[SEP]":
            if current:
                words.append(torch.stack(current).sum(0))
            words.append(vector)
            break
        if not token.startswith("##"):
            if current:
                words.append(torch.stack(current).sum(0))
            current = [vector]
        else:
            current.append(vector)
    out = torch.zeros_like(hidden)
    out[: len(words)] = torch.stack(words)
    return out


@pytest.mark.parametrize("mode", ["sum", "mean"])
def test_word_pieces_are_aggregated_as_the_official_walk(mode: str) -> None:
    encoder = bert(word_pieces=mode)
    tokens = encoder.tokenize(REPORTS)
    slots = piece_words(tokens.input_ids, tokens.attention_mask, encoder.continuation())
    hidden = torch.randn(*tokens.input_ids.shape, 5, dtype=torch.float64)
    summed = aggregate(hidden, slots, "sum")
    split = 0
    for b in range(len(REPORTS)):
        names = [encoder._tokenizer.id_to_token(int(i)) for i in tokens.input_ids[b]]
        split += sum(name.startswith("##") for name in names)
        assert torch.allclose(summed[b], official_aggregate(hidden[b], names))
    assert split > 0  # the test does exercise pieces
    out = encoder(tokens.input_ids, tokens.attention_mask, tokens.sentence_index)
    assert torch.equal(out.piece_word, slots)
    states = encoder.bert(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask).last_hidden_state
    assert torch.allclose(out.word_emb, encoder.local_proj(aggregate(states, slots, mode)), atol=1e-6)
    # word_mask: the real words (no [CLS], no [SEP]); slot_mask: every slot that holds a token
    for b in range(len(REPORTS)):
        count = int(slots[b].max()) + 1  # [CLS] + words + [SEP]
        assert out.word_mask[b].tolist() == [0 < i < count - 1 for i in range(slots.shape[1])]
        assert slot_mask(slots)[b].tolist() == [i < count for i in range(slots.shape[1])]
    assert out.word_sentence[0, 1] == 0 and out.word_sentence[0, int(slots[0].max()) - 1] == 1


def test_defaults_compute_exactly_as_before_and_stay_out_of_the_identity() -> None:
    params = BertTextEncoder.Params()
    assert "hidden_layers" not in params.model_dump() and "word_pieces" not in params.model_dump()
    assert BertTextEncoder.Params(hidden_layers=4).model_dump()["hidden_layers"] == 4
    encoder = bert()
    tokens = encoder.tokenize(REPORTS)
    out = encoder(tokens.input_ids, tokens.attention_mask, tokens.sentence_index)
    hidden = encoder.bert(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask).last_hidden_state
    assert torch.equal(out.word_emb, encoder.local_proj(hidden)) and out.piece_word is None


def test_vit_cls_attention_equals_the_unfused_attention_of_the_last_block() -> None:
    torch.manual_seed(0)
    encoder = TimmImageEncoder(TimmImageEncoder.Params(arch="vit_tiny_patch16_224", vit_patch_size=8), context()).eval()
    images = torch.randn(2, 1, 32, 32)
    assert encoder(images).cls_attention is None
    assert encoder.request_features({"cls_attention"}) == {"cls_attention"}
    out = encoder(images)
    attention = encoder.backbone.blocks[-1].attn
    attention.fused_attn = False  # the eager path: its softmax goes through attn_drop, where a hook reads it
    seen = []
    handle = attention.attn_drop.register_forward_hook(lambda m, args, result: seen.append(args[0]))
    reference = encoder(images)
    handle.remove()
    expected = seen[0][:, :, 0, encoder.backbone.num_prefix_tokens:].mean(1)
    assert out.cls_attention.shape == (2, 16)
    assert torch.allclose(out.cls_attention, expected, atol=1e-6)
    assert torch.allclose(reference.patch_emb, out.patch_emb, atol=1e-5)


def test_a_cnn_has_no_attention_to_give() -> None:
    encoder = TimmImageEncoder(TimmImageEncoder.Params(arch="resnet18"), context())
    assert apply_feature_requests(Requesting(), encoder, nn.Identity()) == {"image": set(), "text": set()}
    assert encoder(torch.randn(2, 1, 32, 32)).cls_attention is None


def test_requests_are_collected_from_every_submodule_and_checked() -> None:
    assert collect_requests(nn.Sequential(nn.Linear(2, 2), Requesting())) == {
        "image": {"cls_attention"}, "text": {"cls_attention"}}
    bad = Requesting()
    bad.feature_requests = frozenset({"attention"})
    with pytest.raises(ValueError, match="not 'image:<name>'"):
        collect_requests(bad)


def test_resnet50_patch_reduction_16_is_layer3_of_the_whole_network() -> None:
    """GLoRIA's and MGCA's region features: layer3 (1024 channels, 19×19 at 299 px), global = avgpool(layer4)."""
    encoder = TimmImageEncoder(TimmImageEncoder.Params(arch="resnet50"), context(299)).eval()
    images = torch.randn(1, 1, 299, 299)
    out = encoder(images)
    net = encoder.backbone
    with torch.no_grad():
        x = net.maxpool(net.act1(net.bn1(net.conv1(images))))
        layer3 = net.layer3(net.layer2(net.layer1(x)))
        layer4 = net.layer4(layer3)
    assert out.grid == (19, 19) and out.patch_feat.shape == (1, 361, 1024)
    assert torch.allclose(out.patch_feat, layer3.flatten(2).transpose(1, 2), atol=1e-5)
    assert torch.allclose(out.global_feat, layer4.mean((-2, -1)), atol=1e-5)
