"""``preset: cmcgns`` against a per-sample port of the official code (violet-42/CM-CGNS), float64.

Every term of the preset's total (global InfoNCE, SimSiam patch loss, cluster-guided sentence loss
with L_FN, CM-MIR) and its gradients (hidden states, patches, image vectors, every parameter) must
equal the port within 1e-6 on ragged batches, over several steps: the k-means initialises on the
first step (no hard negatives there) and is updated and used from the second on.

Official files (paths under ``cgns/models/``): ``cgns/cgns_module.py`` (CGNS), ``cgns/utils/
Kmeans_Cluster.py`` (kmeans_cluster), ``cgns/utils/local_attention.py`` (LocalCrossAttention),
``cgns/utils/sentence_pool.py``, ``cgns/utils/gather.py``, ``backbones/image_decoder.py``
(ImageDecoder). Set-ups the port cannot share with a random run: the k-means' random first
centroid is fixed to the same index on both sides; the token/channel dropout masks of CM-MIR are
recorded from the plugin and reused; the decoder's own dropout is set to 0 (its masks are not
observable); K = 8 clusters so that a small batch can initialise them.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vlpbench.plugin_api import BuildContext
from vlpbench.devkit.testing_official import (CORPUS, assert_close_gradients, build_preset, gradients,
                                       official_sentence_pool, official_sentence_stacks, plugin_step, preset_config,
                                       ragged_step)

START = 3  # index of the first centroid among the batch's sentences, on both sides
K = 8


class OfficialKMeans:
    """kmeans_cluster (Kmeans_Cluster.py:21-203) with optimization = "momentum", lr 0.001."""

    def __init__(self, k: int) -> None:
        self.k, self.lr, self.alpha, self.beta, self.hard_negative_weight = k, 0.001, 0.2, 0.5, 3  # :22-32
        self.initialized = False
        self.centroid: Tensor | None = None

    @staticmethod
    def sim(x: Tensor, y: Tensor) -> Tensor:  # Similarity(temp=1.0), :12-18
        return F.cosine_similarity(x, y, dim=-1) / 1.0

    def optimized_centroid_init(self, centroid: Tensor, first_idx: int) -> None:  # :158-178
        data = centroid.clone().detach()
        batch_cos_sim = self.sim(centroid.unsqueeze(1), centroid.unsqueeze(0)).detach()
        assert self.k <= data.shape[0]
        self.centroid = torch.zeros_like(data[: self.k])
        self.centroid[0] = data[first_idx]
        last_idx = first_idx
        for i in range(1, self.k):
            batch_cos_sim[:, last_idx] = 100
            next_idx = torch.argmin(batch_cos_sim[last_idx])
            self.centroid[i] = data[next_idx]
            last_idx = next_idx
        self.initialized = True

    def forward(self, datapoints: Tensor) -> None:  # :139-156 and update :180-201
        datapoints = datapoints.clone().detach()
        intra_cos_sim = self.sim(datapoints.unsqueeze(1), self.centroid.unsqueeze(0))
        dp_index = torch.argmax(intra_cos_sim, dim=-1, keepdim=True)
        index_dp = F.one_hot(dp_index.squeeze(-1), self.k).T
        data = torch.matmul(index_dp.to(datapoints.dtype), datapoints)
        updated = index_dp.sum(dim=-1).bool().unsqueeze(1).expand_as(self.centroid)
        data = data + self.centroid * updated.logical_not()
        self.centroid = self.lr * data + (1 - self.lr) * self.centroid

    def provide_hard_negative(self, datapoints: Tensor) -> Tensor:  # :36-43
        intra_cos_sim = self.sim(datapoints.unsqueeze(1), self.centroid.unsqueeze(0))
        _, indices = torch.topk(intra_cos_sim, k=2, dim=-1)
        return self.centroid[indices[:, 1]].detach()

    def mask_false_negative(self, datapoints: Tensor) -> Tensor:  # :46-60, :62-92
        intra_cos_sim = self.sim(datapoints.unsqueeze(1), self.centroid.unsqueeze(0))
        dp_index = torch.max(intra_cos_sim, dim=-1, keepdim=True)[1]
        onehot = F.one_hot(dp_index.squeeze(-1), self.k).to(datapoints.dtype)
        dp_cluster = onehot @ onehot.T
        dp_cluster.fill_diagonal_(0)
        return dp_cluster

    def false_negative_loss(self, batch_false_negative_mask: Tensor, batch_cos_sim: Tensor) -> Tensor:  # :94-137
        batch_positive_sim = batch_cos_sim.diag().unsqueeze(-1).expand_as(batch_cos_sim)
        batch_delta = (batch_cos_sim - batch_positive_sim) * batch_false_negative_mask
        return (F.relu(batch_delta + self.alpha) + F.relu(-batch_delta - self.beta)).mean()


def official_text_local_loss(kc: OfficialKMeans, stacks: list[Tensor], x_s: list[Tensor]) -> Tensor:
    """CGNS.text_local_loss_fn, cgns_module.py:235-282 (kmeans_num 128 → K here, temp 1, 0.4, 1e-4)."""
    z1 = F.normalize(torch.cat(stacks, dim=0), dim=-1)  # :238-241
    z2 = F.normalize(torch.cat(x_s, dim=0), dim=-1)
    cos_sim = kc.sim(z1.unsqueeze(1), z2.unsqueeze(0))  # :243
    fn_loss, is_hard = None, False
    normalized_cos = cos_sim * 1.0  # :248
    avg_cos = normalized_cos.mean().item()
    if not kc.initialized:  # :250-254
        if avg_cos <= 0.4:
            kc.optimized_centroid_init(z2, START)
    elif kc.initialized:  # :255-260
        kc.forward(z2)
        is_hard = True
        z3 = kc.provide_hard_negative(z1)
        cos_sim_mask = kc.mask_false_negative(z1)
        fn_loss = kc.false_negative_loss(cos_sim_mask, normalized_cos)
    if is_hard:  # :264-275
        z1_z3_cos = kc.sim(z1.unsqueeze(1), z3.unsqueeze(0))
        cos_sim = torch.cat([cos_sim, z1_z3_cos], 1)
        n = z1_z3_cos.size(-1)
        weights = torch.tensor([[1.0] * (cos_sim.size(-1) - n) + [0.0] * i + [kc.hard_negative_weight]
                                + [0.0] * (n - i - 1) for i in range(n)], dtype=z1.dtype)
        cos_sim = cos_sim * weights
    labels = torch.arange(cos_sim.size(0)).long()  # :277-281
    loss = nn.CrossEntropyLoss()(cos_sim, labels)
    if fn_loss is not None:
        loss = loss + 1e-4 * fn_loss
    return loss


def sequence_first_attention(module: nn.MultiheadAttention, query: Tensor, key: Tensor, value: Tensor) -> Tensor:
    """nn.MultiheadAttention(d_model, nhead) as the official layer builds it (sequence-first, :173-174),
    called on whatever tensors it is given: dimension 0 is the sequence."""
    return F.multi_head_attention_forward(
        query, key, value, module.embed_dim, module.num_heads, module.in_proj_weight, module.in_proj_bias,
        None, None, False, 0.0, module.out_proj.weight, module.out_proj.bias, training=False, need_weights=False)[0]


def official_layer(layer: nn.TransformerDecoderLayer, tgt: Tensor, memory: Tensor) -> Tensor:
    """TransformerDecoderLayer.forward, image_decoder.py:188-198: its sequence-first attention gets the
    batch-first [B,N,D] tensors, so it attends across the batch; dropout 0 here."""
    tgt = layer.norm1(tgt + sequence_first_attention(layer.self_attn, tgt, tgt, tgt))
    tgt = layer.norm2(tgt + sequence_first_attention(layer.multihead_attn, tgt, memory, memory))
    return layer.norm3(tgt + layer.linear2(F.relu(layer.linear1(tgt))))


def official_head(head: nn.Sequential, z: Tensor) -> Tensor:
    """output_head, image_decoder.py:337-378: Conv–ReLU–Up×2 stages, the last ending in Tanh."""
    convs = [m for m in head if isinstance(m, nn.Conv2d)]
    for conv in convs:
        z = F.interpolate(F.relu(conv(z)), scale_factor=2, mode="bilinear", align_corners=True)
    return torch.tanh(z)


def official_rec(mir, patches: Tensor, x_p: Tensor, image: Tensor, keep: Tensor, grid) -> Tensor:
    """ImageDecoder.forward, image_decoder.py:396-448, on the L2-normalised patches (cgns_module.py:457,505)."""
    h, w = grid
    if mir.path == "convolution":  # :398-414 (resnet_50)
        image_embed = patches.permute(0, 2, 1).contiguous().view(patches.size(0), patches.size(2), h, w)
        text_embed = x_p.permute(0, 2, 1).contiguous().view(x_p.size(0), x_p.size(2), h, w)
        image_embed = image_embed * keep.expand_as(image_embed)  # SpatialDropout, :94-95
        z = torch.cat([image_embed, text_embed], dim=1)
    else:  # :416-442 (vit_base)
        image_embed = patches * (keep / (1 - 0.5)).expand_as(patches)  # SpatialDropout, :100-102
        # MultiHeadAttentionFusion, :161-168: sequence-first, fed transposed tensors (per sample)
        z = sequence_first_attention(mir.fusion, image_embed.transpose(0, 1), x_p.transpose(0, 1),
                                     x_p.transpose(0, 1)).transpose(0, 1)
        z = z + mir.position.flatten(2).transpose(1, 2)  # :432 (positional_encoding [N,D])
        output = z
        for _ in range(6):  # TransformerDecoder.forward, :218-224, with _get_clones' shared layer
            output = official_layer(mir.layers[0], output, z)
        z = output.permute(0, 2, 1).contiguous().view(output.size(0), output.size(2), h, w)  # :438-442
    output = official_head(mir.head, z)
    return F.l1_loss(output, image) * 10  # loss_fn, :451-455


def official_step(modules, kc: OfficialKMeans, step, grid, keep: Tensor) -> dict[str, Tensor]:
    """CGNS.stage2_step (cgns_module.py:442-539): every term of the stage-2 loss."""
    text, objective = modules.text, modules.objective
    head = objective.scheduled[0].module
    mir = objective.scheduled[1].module
    local_image_embed = F.normalize(step.patches, dim=-1)  # :457
    global_image_embed = F.normalize(step.image_global, dim=-1)  # :458
    local_text_embed = F.normalize(text.local_proj(step.hidden), dim=-1)  # encode_text :168-173, :464
    stacks = official_sentence_stacks(local_text_embed, step.sentence_index)  # :466
    global_text_embed = torch.cat([official_sentence_pool(text.sentence_pool, s.unsqueeze(0)) for s in stacks])  # :295-300
    global_text_embed = F.normalize(global_text_embed, dim=-1)  # :469
    # global_alignment_loss, :175-203 (one process)
    logit_scale = objective.global_loss.log_scale.exp()
    logits_per_image = logit_scale * global_image_embed @ global_text_embed.t()
    logits_per_text = logit_scale * global_text_embed @ global_image_embed.t()
    labels = torch.arange(len(stacks))
    global_loss = (F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_text, labels)) / 2
    # local_alignment_loss, :205-226, with LocalCrossAttention (local_attention.py:62-109)
    att, predictor = head.attention, head.predictor
    total_image_loss, x_p_stacks, x_s_stacks = 0.0, [], []
    for idx in range(local_image_embed.size(0)):
        image_b, text_b = local_image_embed[idx], stacks[idx]
        query1, key1, value1 = att.q_image(image_b), att.k_image(image_b), att.v_image(image_b)  # :83-85
        query2, key2, value2 = att.q_text(text_b), att.k_text(text_b), att.v_text(text_b)  # :88-90
        x_s = torch.sigmoid(query2 @ key1.T / math.sqrt(att.dim)) @ value1  # :92-100, context_layer1
        x_p = torch.sigmoid(query1 @ key2.T / math.sqrt(att.dim)) @ value2  # :102-108, context_layer2
        p_x, p_y = predictor(image_b), predictor(x_p)  # simsiam_loss_func, :228-233
        total_image_loss = total_image_loss - (F.cosine_similarity(p_x, x_p.detach(), dim=-1).mean()
                                               + F.cosine_similarity(p_y, image_b.detach(), dim=-1).mean()) * 0.5
        x_p_stacks.append(x_p.unsqueeze(0))
        x_s_stacks.append(x_s)
    local_image_loss = total_image_loss / local_image_embed.size(0)
    local_text_loss = official_text_local_loss(kc, stacks, x_s_stacks)
    rec = official_rec(mir, local_image_embed, torch.cat(x_p_stacks), step.images, keep, grid)  # :505
    return {"global": global_loss, "local_image": local_image_loss, "local_text": local_text_loss, "rec": rec}


@pytest.mark.parametrize("encoder", ["vit", "cnn"])
def test_cmcgns_preset_equals_the_official_code_over_several_steps(encoder: str) -> None:
    grid, dim = (2, 2), 16

    class Encoder(nn.Module):
        is_vit = encoder == "vit"

    context = BuildContext(embed_dim=dim, image_size=16, patch_grid=grid, corpus=CORPUS,
                           built={"image_encoder": Encoder()})
    config = preset_config("cmcgns", **{"objective.local_heads.0.clusters": K,
                                        "objective.auxiliaries.0.dropout": 0.0})
    modules = build_preset(config, context)
    head, mir = modules.objective.scheduled[0].module, modules.objective.scheduled[1].module
    assert mir.path == ("transformer" if encoder == "vit" else "convolution")
    if encoder == "vit":  # ImageDecoder(num_heads=8, num_layers=6, dim_feedforward=2048), image_decoder.py:330
        layer = mir.layers[0]
        assert len(mir.layers) == 1 and mir.params.depth == 6
        assert layer.linear1.out_features == 2048 and layer.self_attn.num_heads == 8 == mir.fusion.num_heads
    assert [m.out_channels for m in mir.head if isinstance(m, nn.Conv2d)] == [512, 256, 1]  # :361-377, 1 colour
    head.kmeans.random_start = lambda count: START
    masks: list[Tensor] = []
    draw = torch.Generator().manual_seed(1)

    def record(shape, like):
        masks.append(torch.bernoulli(torch.full(shape, 0.5, dtype=like.dtype), generator=draw))
        return masks[-1]

    mir.keep_mask = record
    kc = OfficialKMeans(K)
    generator = torch.Generator().manual_seed(2)
    for number in range(4):
        step = ragged_step(generator, batch=6, hidden=32, dim=dim, patches=4, image_size=16, corpus_size=len(CORPUS))
        ours = plugin_step(modules, step, grid, progress=0.5)
        official = official_step(modules, kc, step, grid, masks[-1])
        expected_terms = {"global", "cmcgns.cross_attention/patch", "cmcgns.cross_attention/sentence",
                          "cmcgns.mir/rec"} | ({"cmcgns.cross_attention/fn"} if number else set())
        assert set(ours.terms) == expected_terms, number  # no hard negatives on the initialising step
        t = ours.terms
        assert t["global"].item() == pytest.approx(official["global"].item(), abs=1e-9)
        assert t["cmcgns.cross_attention/patch"].item() == pytest.approx(official["local_image"].item(), abs=1e-9)
        sentence = t["cmcgns.cross_attention/sentence"] + t.get("cmcgns.cross_attention/fn", 0.0)
        assert sentence.item() == pytest.approx(official["local_text"].item(), abs=1e-9)
        assert t["cmcgns.mir/rec"].item() == pytest.approx(official["rec"].item(), abs=1e-9)
        official_total = sum(official.values())
        assert ours.total.item() == pytest.approx(official_total.item(), abs=1e-6)
        assert_close_gradients(gradients(ours.total, step, modules), gradients(official_total, step, modules))
        assert kc.initialized and torch.allclose(head.kmeans.centroids, kc.centroid, atol=1e-12)
