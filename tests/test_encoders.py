"""The built-in encoders: shapes for CNN and ViT, sentence vectors, local pretrained weights only."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vlpbench.core.context import BuildContext
from vlpbench.core.errors import DataError, RegistryError
from vlpbench.models.image_timm import TimmImageEncoder
from vlpbench.models.text_bert import BertTextEncoder, sentence_means

CORPUS = ["The heart is enlarged. No effusion.", "The lungs are clear. No pneumothorax. Normal heart."]


def context(size: int = 64) -> BuildContext:
    return BuildContext(embed_dim=16, image_size=size, corpus=CORPUS)


@pytest.mark.parametrize("arch, grid", [("resnet18", (4, 4)), ("vit_tiny_patch16_224", (4, 4))])
def test_image_encoder_gives_global_and_patch_tokens(arch: str, grid: tuple[int, int]) -> None:
    """Defaults: a CNN's patches from its stride-16 stage (layer3), a ViT at its own patch size (16)."""
    encoder = TimmImageEncoder(TimmImageEncoder.Params(arch=arch), context())
    out = encoder(torch.randn(2, 1, 64, 64))
    assert out.grid == grid
    assert out.global_emb.shape == (2, 16) and out.patch_emb.shape == (2, grid[0] * grid[1], 16)
    assert out.global_feat.shape[0] == 2 and out.patch_feat.shape[:2] == (2, grid[0] * grid[1])


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_cnn_is_the_whole_network_by_default(arch: str) -> None:
    """The backbone holds every parameter of timm's network without its classifier (ResNet-50:
    23.5 M), the global vector comes from the last stage and the patches from layer3."""
    import timm

    whole = sum(p.numel() for p in timm.create_model(arch, num_classes=0, in_chans=1).parameters())
    encoder = TimmImageEncoder(TimmImageEncoder.Params(arch=arch), context(224))
    assert sum(p.numel() for p in encoder.backbone.parameters()) == whole
    if arch == "resnet50":
        assert 23.4e6 < whole < 23.6e6
    out = encoder(torch.randn(1, 1, 224, 224))
    assert out.global_feat.shape[1] == encoder.backbone.feature_info.channels()[-1]
    assert out.grid == (14, 14) and out.patch_feat.shape[2] == encoder.backbone.feature_info.channels()[-2]


def test_cnn_cut_after_a_shallower_stage_when_asked() -> None:
    encoder = TimmImageEncoder(TimmImageEncoder.Params(arch="resnet18", patch_reduction=8, global_reduction=8), context())
    out = encoder(torch.randn(2, 1, 64, 64))
    assert out.global_feat.shape == (2, 128) and out.patch_feat.shape == (2, 64, 128)
    assert len(encoder.backbone.feature_info.channels()) == 3  # stem, layer1, layer2


def test_vit_uses_its_own_patch_size_unless_told() -> None:
    own = TimmImageEncoder(TimmImageEncoder.Params(arch="vit_tiny_patch16_224"), context(224))
    assert own(torch.randn(1, 1, 224, 224)).grid == (14, 14)  # 196 tokens, as ViT-B/16 at 224 px
    small = TimmImageEncoder(TimmImageEncoder.Params(arch="vit_tiny_patch16_224", vit_patch_size=8), context())
    assert small(torch.randn(1, 1, 64, 64)).grid == (8, 8)


def test_unknown_arch_and_stride_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="not a timm model"):
        TimmImageEncoder(TimmImageEncoder.Params(arch="resnet_does_not_exist"), context())
    with pytest.raises(RegistryError, match="strides"):
        TimmImageEncoder(TimmImageEncoder.Params(arch="resnet18", patch_reduction=3), context())


def test_image_weights_load_from_a_local_file_only(tmp_path: Path) -> None:
    import timm

    source = timm.create_model("resnet18", pretrained=False, num_classes=0)
    path = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), path)
    encoder = TimmImageEncoder(TimmImageEncoder.Params(arch="resnet18", pretrained_path=str(path)), context())
    # timm folds the RGB stem into one input channel by summing over the colour channels
    expected = source.conv1.weight.sum(1, keepdim=True)
    assert torch.allclose(encoder.backbone.conv1.weight, expected, atol=1e-6)
    assert torch.equal(encoder.backbone.layer1[0].conv1.weight, source.layer1[0].conv1.weight)
    with pytest.raises(DataError, match="does not exist"):
        TimmImageEncoder(TimmImageEncoder.Params(arch="resnet18", pretrained_path=str(tmp_path / "no.pth")), context())


def test_text_encoder_gives_words_and_sentence_means() -> None:
    encoder = BertTextEncoder(BertTextEncoder.Params(layers=1, hidden=32, heads=2, vocab_size=200), context())
    tokens = encoder.tokenize([["The heart is enlarged.", "No effusion."], ["The lungs are clear."]])
    out = encoder(tokens.input_ids, tokens.attention_mask, tokens.sentence_index)
    assert out.global_emb.shape == (2, 16)
    assert out.sentence_mask.tolist() == [[True, True], [True, False]]
    first = tokens.sentence_index[0] == 0
    assert torch.allclose(out.sentence_emb[0, 0], out.word_emb[0][first].mean(0), atol=1e-6)


def test_sentence_means_by_hand() -> None:
    words = torch.tensor([[[1.0], [3.0], [10.0], [0.0]]])
    index = torch.tensor([[0, 0, 1, -1]])
    means, mask = sentence_means(words, index)
    assert means.squeeze(-1).tolist() == [[2.0, 10.0]] and mask.tolist() == [[True, True]]


def test_text_encoder_from_a_local_hugging_face_directory(tmp_path: Path) -> None:
    from transformers import BertConfig, BertModel, BertTokenizer

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "heart", "is", "enlarged", ".", "no", "effusion"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizer(str(tmp_path / "vocab.txt")).save_pretrained(tmp_path)  # positional: vocab_file (4.x) / vocab (5.x)
    model = BertModel(BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1,
                                 num_attention_heads=2, intermediate_size=64))
    model.save_pretrained(tmp_path)
    encoder = BertTextEncoder(BertTextEncoder.Params(pretrained=str(tmp_path)), context())
    assert torch.equal(encoder.bert.embeddings.word_embeddings.weight, model.embeddings.word_embeddings.weight)
    tokens = encoder.tokenize([["The heart is enlarged.", "No effusion."]])
    assert tokens.input_ids[0, 1:5].tolist() == [5, 6, 7, 8]
    out = encoder(tokens.input_ids, tokens.attention_mask, tokens.sentence_index)
    assert out.sentence_mask.tolist() == [[True, True]]
    with pytest.raises(DataError, match="config.json"):
        BertTextEncoder(BertTextEncoder.Params(pretrained=str(tmp_path / "missing")), context())


def test_local_weights_checksums_are_checked(tmp_path: Path) -> None:
    """timm file and Hugging Face directory: a matching SHA-256 loads, another is a clear error."""
    import timm
    from transformers import BertConfig, BertModel, BertTokenizer

    from vlpbench.engine.files import file_sha256

    path = tmp_path / "resnet18.pth"
    torch.save(timm.create_model("resnet18", pretrained=False, num_classes=0).state_dict(), path)
    digest = file_sha256(path)
    TimmImageEncoder(TimmImageEncoder.Params(arch="resnet18", pretrained_path=str(path), pretrained_sha256=digest), context())
    with pytest.raises(DataError, match=f"has SHA-256 {digest}, not the expected"):
        TimmImageEncoder(TimmImageEncoder.Params(arch="resnet18", pretrained_path=str(path), pretrained_sha256="0" * 64),
                         context())

    folder = tmp_path / "bert"
    folder.mkdir()
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "heart"]) + "\n")
    BertModel(BertConfig(vocab_size=6, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(folder)
    weights = next(folder / name for name in ("model.safetensors", "pytorch_model.bin") if (folder / name).is_file())
    BertTokenizer(str(folder / "vocab.txt")).save_pretrained(folder)
    pinned = {"path": str(folder), "sha256": file_sha256(weights)}
    BertTextEncoder(BertTextEncoder.Params(pretrained=pinned), context())
    with pytest.raises(DataError, match="not the expected pretrained_sha256"):
        BertTextEncoder(BertTextEncoder.Params(pretrained={"path": str(folder), "sha256": "f" * 64}), context())
    weights.unlink()
    with pytest.raises(DataError, match="no weights file"):
        BertTextEncoder(BertTextEncoder.Params(pretrained=str(folder)), context())
