"""CM-CGNS's components: k-means against its formula, margins and hard negatives by hand,
vectorised = per-report loop, cluster negatives switching on, CM-MIR, gradients."""

from __future__ import annotations

import math

import pytest
import torch

from vlpbench.plugin_api import BuildContext, Positives
from vlpbench.devkit.testing import feature_inputs, permute_inputs
from vlpbench_cmcgns.cluster_negatives import ClusterGuidedNegatives
from vlpbench_cmcgns.cross_attention import CACHE_KEY, BidirectionalCrossAttentionHead
from vlpbench_cmcgns.kmeans import StreamingKMeans, same_cluster_margin
from vlpbench_cmcgns.loop_reference import cross_attention_loop
from vlpbench_cmcgns.reconstruction import CrossModalMaskedReconstruction


def test_kmeans_update_is_the_momentum_sum_formula() -> None:
    kmeans = StreamingKMeans(3, 2, momentum=0.999, queue_size=4)
    kmeans.centroids.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]))
    kmeans.update(torch.tensor([[1.0, 0.1], [0.9, 0.0], [0.0, 2.0]]))
    expected = [[1.0009, 0.0001], [0.0, 1.001], [-1.0, 0.0]]  # 0.001·Σx + 0.999·c; empty cluster kept
    assert kmeans.centroids.tolist() == [pytest.approx(row, abs=1e-6) for row in expected]


def test_kmeans_initialises_only_when_similar_enough_and_enough_features() -> None:
    kmeans = StreamingKMeans(2, 2, queue_size=4)
    kmeans.enqueue(torch.tensor([[1.0, 0.0]]))
    kmeans.maybe_initialise(torch.tensor(0.1))
    assert not kmeans.ready  # one feature, two clusters
    kmeans.enqueue(torch.tensor([[0.0, 1.0], [-1.0, 0.1]]))
    kmeans.maybe_initialise(torch.tensor(0.5))
    assert not kmeans.ready  # mean cosine above 0.4
    kmeans.maybe_initialise(torch.tensor(0.35))
    assert kmeans.ready


def test_farthest_point_initialisation() -> None:
    torch.manual_seed(0)
    pool = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-1.0, 0.0]])
    kmeans = StreamingKMeans(2, 2, queue_size=4, init="farthest_point")
    kmeans.enqueue(pool)
    kmeans.maybe_initialise(torch.tensor(0.0))
    first, second = kmeans.centroids
    similarity = torch.nn.functional.normalize(pool, dim=-1) @ torch.nn.functional.normalize(first, dim=0)
    assert torch.equal(second, pool[similarity.argmin()])


def test_queue_is_a_ring_of_the_latest_features() -> None:
    kmeans = StreamingKMeans(2, 1, queue_size=3)
    kmeans.enqueue(torch.tensor([[1.0], [2.0]]))
    kmeans.enqueue(torch.tensor([[3.0], [4.0]]))
    assert sorted(kmeans.queue.squeeze(1).tolist()) == [2.0, 3.0, 4.0] and int(kmeans.queue_count) == 3


def test_hard_negative_is_the_second_closest_centroid() -> None:
    kmeans = StreamingKMeans(3, 2, queue_size=3)
    diagonal = [1 / math.sqrt(2), 1 / math.sqrt(2)]
    kmeans.centroids.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], diagonal]))
    assert kmeans.hard_negatives(torch.tensor([[1.0, 0.0]])).tolist() == [pytest.approx(diagonal)]


def test_same_cluster_margin_by_hand() -> None:
    c = torch.tensor([[0.9, 0.8, 0.1], [0.5, 0.6, 0.2], [0.3, 0.2, 0.7]])
    clusters = torch.tensor([0, 0, 1])
    # Δ01 = Δ10 = −0.1 → ReLU(0.1) + ReLU(0.1 − 0.5) = 0.1 each
    assert same_cluster_margin(c, clusters, 0.2, 0.5).item() == pytest.approx(0.1, abs=1e-6)
    # official reduction: the 7 other entries add ReLU(0.2) each, mean over 9
    assert same_cluster_margin(c, clusters, 0.2, 0.5, "all").item() == pytest.approx(1.6 / 9, abs=1e-6)
    far = torch.tensor([[0.9, 0.1], [0.0, 0.9]])  # Δ = −0.8 and −0.9: both beyond the 0.5 margin
    assert same_cluster_margin(far, torch.tensor([0, 0]), 0.2, 0.5).item() == pytest.approx(0.35, abs=1e-6)


def head(**params) -> BidirectionalCrossAttentionHead:
    torch.manual_seed(0)
    return BidirectionalCrossAttentionHead(BidirectionalCrossAttentionHead.Params(**params), BuildContext(embed_dim=8))


@pytest.mark.parametrize("sentence_vectors", ["unit_word_mean", "normalised"])
def test_cross_attention_vectorised_equals_the_per_report_loop(sentence_vectors: str) -> None:
    h = head(cluster_negatives=False, sentence_vectors=sentence_vectors)
    inputs = feature_inputs(batch_size=5, dim=8, grid=(3, 3), sentence_counts=[3, 1, 2, 3, 2], seed=6)
    fast, slow = h(inputs), cross_attention_loop(h, inputs)
    for key in ("patch", "sentence"):
        assert fast[key].item() == pytest.approx(slow[key].item(), abs=1e-5), key


def test_padded_sentences_do_not_change_the_patches_attention() -> None:
    h = head(cluster_negatives=False, sentence_vectors="encoder")
    inputs = feature_inputs(batch_size=2, dim=8, sentence_counts=[2, 1], seed=7)
    h(inputs)
    first = inputs.cache[CACHE_KEY].clone()
    inputs.text.sentence_emb[1, 1:] = 100.0  # padding
    h(inputs)
    assert torch.allclose(inputs.cache[CACHE_KEY], first)


def test_cluster_negatives_switch_on_and_add_the_centroid_column() -> None:
    h = head(clusters=4, queue_size=8, init_threshold=1.0)
    inputs = feature_inputs(batch_size=4, dim=8, sentence_counts=[3, 3, 2, 2], seed=8)
    out = h(inputs)
    assert h.kmeans.ready and "fn" not in out  # the initialising step uses no hard negatives (official)
    assert "fn" in h(inputs)
    h.eval()
    with_column = h(inputs)["sentence"]
    h.params = h.params.model_copy(update={"cluster_negatives": False})
    without = h(inputs)["sentence"]
    assert with_column.item() > without.item()  # one more candidate in every denominator


def test_cluster_negatives_stay_off_while_similarity_is_high() -> None:
    h = head(clusters=4, queue_size=8, init_threshold=-1.0)
    out = h(feature_inputs(batch_size=4, dim=8, seed=9))
    assert not h.kmeans.ready and "fn" not in out


def test_global_cluster_negatives_append_three_times_the_centroid_cosine() -> None:
    params = ClusterGuidedNegatives.Params(clusters=2, queue_size=4, init_threshold=1.0, skip_initialising_step=False)
    weighting = ClusterGuidedNegatives(params, BuildContext(embed_dim=2))
    v = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.2]])
    inputs = feature_inputs(image_global=v, text_global=v.flip(0))
    adjustment = weighting(inputs, Positives(torch.eye(4)))
    assert weighting.text_clusters.ready and "fn" in adjustment.losses
    extra = adjustment.image_to_text.extra_logits
    centroids = weighting.text_clusters.centroids
    hard = weighting.text_clusters.hard_negatives(v)
    expected = 3 * torch.nn.functional.cosine_similarity(v, hard, dim=-1)
    assert extra.shape == (4, 1) and torch.allclose(extra.squeeze(1), expected)
    assert centroids.shape == (2, 2)


def mir(context_grid=(2, 2), **params) -> CrossModalMaskedReconstruction:
    torch.manual_seed(0)
    params = {"heads": 2, "feedforward": 16, "head_width": 16, **params}
    return CrossModalMaskedReconstruction(CrossModalMaskedReconstruction.Params(**params),
                                          BuildContext(embed_dim=8, image_size=16, patch_grid=context_grid))


def test_reconstruction_trains_the_decoder_and_reaches_the_patches() -> None:
    m = mir()
    inputs = feature_inputs(batch_size=3, dim=8, grid=(2, 2), seed=10)
    inputs.image.patch_emb.requires_grad_(True)
    loss = m(inputs)["rec"]
    assert torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    assert inputs.image.patch_emb.grad.abs().sum() > 0 and m.layers[0].linear1.weight.grad.abs().sum() > 0
    assert len(m.layers) == 1  # one layer's weights, applied six times


def test_reconstruction_reuses_the_heads_text_conditioned_patches() -> None:
    m = mir()
    inputs = feature_inputs(batch_size=2, dim=8, grid=(2, 2), seed=11)
    inputs.cache[CACHE_KEY] = torch.randn(2, 4, 8)
    m(inputs)["rec"].backward()
    assert m.own_attention.query.weight.grad is None


def test_head_and_reconstruction_are_invariant_to_batch_order_in_eval() -> None:
    h, m = head(cluster_negatives=False).eval(), mir(mask_at_eval=False).eval()
    inputs = feature_inputs(batch_size=4, dim=8, grid=(2, 2), sentence_counts=[3, 1, 2, 3], seed=12)
    permuted = permute_inputs(inputs, torch.tensor([1, 3, 0, 2]))
    a, b = h(inputs), h(permuted)
    for key in a:
        assert a[key].item() == pytest.approx(b[key].item(), abs=1e-6)
    assert m(inputs)["rec"].item() == pytest.approx(m(permuted)["rec"].item(), abs=1e-5)


def test_sentence_loss_with_the_centroid_column_by_hand() -> None:
    h = head(clusters=3, queue_size=3)
    h.kmeans = StreamingKMeans(3, 2, queue_size=3)
    diagonal = [1 / math.sqrt(2), 1 / math.sqrt(2)]
    h.kmeans.centroids.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], diagonal]))
    h.kmeans.initialised.fill_(True)
    h.eval()  # no k-means update
    z = torch.eye(2)
    # official block: row i is [C_i·, 3·cos(z_i, h_i) in column i, 0 elsewhere]
    # → log(e + 1 + e^{3/√2} + e^0) − 1 (C = I, τ = 1; the centroid (1,1)/√2 is 2nd-closest to both)
    official = math.log(math.e + 1 + math.exp(3 / math.sqrt(2)) + 1) - 1
    assert h.sentence_loss(z, z)["sentence"].item() == pytest.approx(official, abs=1e-6)
    h.params = h.params.model_copy(update={"hard_negative_logits": "single_column"})
    terms = h.sentence_loss(z, z)
    # single column: logits [1, 0] plus 3·cos(z_i, diagonal centroid) = 3/√2 → log(e + 1 + e^{3/√2}) − 1
    assert terms["sentence"].item() == pytest.approx(1.4899296, abs=1e-6)
    h.params = h.params.model_copy(update={"cluster_negatives": False})
    assert h.sentence_loss(z, z)["sentence"].item() == pytest.approx(0.3132617, abs=1e-6)


def test_simsiam_patch_loss_by_hand() -> None:
    from vlpbench_cmcgns.cross_attention import simsiam_patch_loss

    identity = torch.nn.Identity()
    patches = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    conditioned = torch.tensor([[[1.0, 1.0], [0.0, 1.0]]])
    # cosines 1/√2 and 1 in both directions: −½(2 · mean) = −(1/√2 + 1)/2
    value = simsiam_patch_loss(identity, patches, conditioned, torch.tensor([True]))
    assert value.item() == pytest.approx(-(1 / math.sqrt(2) + 1) / 2, abs=1e-6)


def test_reconstruction_path_follows_the_encoder_and_can_be_overridden() -> None:
    from vlpbench_cmcgns.reconstruction import convolution_head

    class Cnn(torch.nn.Module):
        is_vit = False

    context = BuildContext(embed_dim=8, image_size=16, patch_grid=(2, 2), built={"image_encoder": Cnn()})
    params = CrossModalMaskedReconstruction.Params(heads=2, head_width=16)
    cnn = CrossModalMaskedReconstruction(params, context)
    assert cnn.path == "convolution" and not hasattr(cnn, "layers")
    assert cnn.head[0].in_channels == 16  # patch map and x_p concatenated (image_decoder.py:408)
    forced = CrossModalMaskedReconstruction(params.model_copy(update={"path": "transformer"}), context)
    assert forced.path == "transformer" and forced.head[0].in_channels == 8
    # the official ViT head: 14 → 224 in four ×2 stages, widths 512/256/128, then 3 colours, ReLU, Up, Tanh
    official = convolution_head(768, (14, 14), 224, 3)
    convs = [m for m in official if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(768, 512), (512, 256), (256, 128), (128, 3)]
    assert isinstance(official[-1], torch.nn.Tanh) and isinstance(official[-3], torch.nn.ReLU)


def test_convolution_path_drops_whole_channels_without_rescaling() -> None:
    class Cnn(torch.nn.Module):
        is_vit = False

    context = BuildContext(embed_dim=8, image_size=16, patch_grid=(2, 2), built={"image_encoder": Cnn()})
    m = CrossModalMaskedReconstruction(CrossModalMaskedReconstruction.Params(head_width=16), context)
    patches = torch.nn.functional.normalize(torch.randn(3, 4, 8), dim=-1)
    keep = torch.zeros(3, 8, 1, 1)
    keep[:, :4] = 1.0
    m.keep_mask = lambda shape, like: keep  # type: ignore[method-assign]
    features = m.decode_channels(patches, torch.zeros(3, 4, 8), (2, 2), drop=True)
    image_map = patches.transpose(1, 2).reshape(3, 8, 2, 2)
    assert torch.equal(features[:, :4], image_map[:, :4]) and features[:, 4:8].abs().sum() == 0


def test_every_decoder_layer_attends_to_the_fused_input() -> None:
    m = mir(mask_ratio=0.0, dropout=0.0, depth=2).eval()
    patches, conditioned = torch.randn(3, 4, 8), torch.randn(3, 4, 8)
    z = m.fusion(patches, conditioned, conditioned, need_weights=False)[0] + m.positional((2, 2))
    layer = m.layers[0]
    expected = layer(layer(z, z), z)  # official: transformer_decoder(z, z), memory fixed (image_decoder.py:218-224)
    got = m.decode_tokens(patches, conditioned, (2, 2), drop=False)
    assert torch.allclose(got, expected.transpose(1, 2).reshape(3, 8, 2, 2), atol=1e-6)
    assert not layer.self_attn.batch_first  # the official layers attend across the batch (sequence-first)
