"""CM-CGNS's local head: bidirectional sigmoid cross-attention, SimSiam patch loss, sentence loss.

[code: utils/local_attention.py, models/cgns/cgns_module.py] Per report (D = embedding size)::

    x_s = sigmoid((W_q2 S)(W_k1 P)ᵀ / √D) (W_v1 P)    T×D  image content attended by each sentence
    x_p = sigmoid((W_q1 P)(W_k2 S)ᵀ / √D) (W_v2 S)    N×D  text content attended by each patch

- patch loss, SimSiam style (no negatives): ``L_li = −½[cos(pred(P), sg(x_p)) + cos(pred(x_p), sg(P))]``
  averaged over patches, then reports; ``pred = Linear(D→D/2)–ReLU–Linear(D/2→D)`` (no BN);
- sentence loss over every sentence of the batch (N_s): ``C_ij = cos(z1_i, z2_j)`` with z1 the
  sentence vectors and z2 their x_s, temperature 1.0; with cluster-guided negatives (see
  :mod:`vlpbench_cmcgns.cluster_loss`): ``L_lt = CE([C_i·, block_i], i) + 1e-4·L_FN``, where the
  official block holds ``3·cos(z1_i, h_i)`` in column i and 0 in the other N−1 columns.

Inputs as in the official code (``cgns_module.py:365-377``): the patch tokens are L2-normalised
(``normalise_patches``); the sentence vectors are the means of the L2-normalised word tokens of
each sentence, not re-normalised (``sentence_vectors: unit_word_mean``, computed here from the
word tokens, so the head is official whatever the text encoder's own sentence vectors are);
``normalised`` re-normalises the encoder's sentence vectors, ``encoder`` takes them as they are.

Negative scope: the sentence loss compares sentences across the batch. ``scope: local`` (the
preset's default, as in the official code, whose sentence loss runs per GPU) uses this process's
sentences; ``scope: gathered`` gathers every process's sentence pairs, so the sentence loss and
the k-means see the whole global batch. The patch loss has no negatives and is always per process.

Returned terms: ``patch``, ``sentence`` and ``fn`` (the weighted L_FN, present once the centroids
exist: its step count in the run's provenance shows that the cluster negatives were active).
Vectorised: sentences are padded and masked (a padded sentence gets zero attention from every patch);
x_p is published in ``inputs.cache`` for CM-MIR.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from vlpbench.plugin_api import AlignmentInputs, BuildContext, ModuleComponent, gather_rows, sentence_means
from vlpbench_cmcgns.cluster_loss import cluster_negatives
from vlpbench_cmcgns.kmeans import StreamingKMeans

CACHE_KEY = "cmcgns.text_conditioned_patches"


class BidirectionalCrossAttention(nn.Module):
    """Six projections; sentences attend over patches and patches over sentences (sigmoid weights)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.q_image, self.k_image, self.v_image = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.q_text, self.k_text, self.v_text = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)

    def forward(self, patches: Tensor, sentences: Tensor, sentence_mask: Tensor) -> tuple[Tensor, Tensor]:
        scale = math.sqrt(self.dim)
        to_patches = torch.sigmoid(self.q_text(sentences) @ self.k_image(patches).transpose(1, 2) / scale)
        x_s = to_patches @ self.v_image(patches)  # [B,T,D]
        to_sentences = torch.sigmoid(self.q_image(patches) @ self.k_text(sentences).transpose(1, 2) / scale)
        to_sentences = to_sentences * sentence_mask.unsqueeze(1).to(to_sentences.dtype)
        x_p = to_sentences @ self.v_text(sentences)  # [B,N,D]
        return x_s, x_p


def simsiam_patch_loss(predictor: nn.Module, patches: Tensor, conditioned: Tensor, reports: Tensor) -> Tensor:
    """−½[cos(pred(P), sg(x_p)) + cos(pred(x_p), sg(P))], mean over patches, then over ``reports``."""
    forward = F.cosine_similarity(predictor(patches), conditioned.detach(), dim=-1).mean(1)
    backward = F.cosine_similarity(predictor(conditioned), patches.detach(), dim=-1).mean(1)
    per_report = -0.5 * (forward + backward)
    weights = reports.to(per_report.dtype)
    return (per_report * weights).sum() / weights.sum().clamp_min(1.0)


class BidirectionalCrossAttentionHead(ModuleComponent["BidirectionalCrossAttentionHead.Params"]):
    reference = "arXiv:2506.11674 (CM-CGNS)"
    official_code = "https://github.com/violet-42/CM-CGNS"

    requires = frozenset({"image:patches", "text:sentences"})

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        normalise_patches: bool = Field(True, description="L2-normalise the patch tokens first (official)")
        sentence_vectors: Literal["unit_word_mean", "normalised", "encoder"] = Field(
            "unit_word_mean", description="means of the L2-normalised word tokens (official), or the encoder's "
                                          "sentence vectors re-normalised, or as given")
        temperature: float = Field(1.0, gt=0, description="sentence-loss temperature (official: 1.0)")
        cluster_negatives: bool = Field(True, description="append the centroid hard negative and add L_FN")
        clusters: int = Field(128, ge=2, description="k-means K")
        momentum: float = Field(0.999, ge=0, lt=1)
        init_threshold: float = Field(0.4, description="initialise once mean(C) ≤ this")
        init: Literal["chain", "farthest_point"] = "chain"
        init_pool: Literal["batch", "queue"] = Field("batch", description="initialise from the batch (official) when "
                                                                          "it holds ≥ K sentences, else from the queue")
        queue_size: int = Field(1024, ge=2, description="recent features kept for initialisation")
        hard_negative_scale: float = Field(3.0, gt=0)
        margin_low: float = 0.2
        margin_high: float = 0.5
        fn_weight: float = Field(1e-4, ge=0)
        margin_reduction: Literal["all", "pairs"] = Field("all", description="L_FN averaged over every entry "
                                                                            "(official) or over same-cluster pairs")
        hard_negative_logits: Literal["official_block", "single_column"] = Field(
            "official_block", description="the official N×N block (N−1 zero logits per row) or one centroid column")
        skip_initialising_step: bool = Field(True, description="no hard negatives on the step that initialises "
                                                               "the centroids (official)")

    def __init__(self, params: "BidirectionalCrossAttentionHead.Params", context: BuildContext) -> None:
        super().__init__(params, context)
        dim = context.embed_dim
        self.attention = BidirectionalCrossAttention(dim)
        self.predictor = nn.Sequential(nn.Linear(dim, dim // 2), nn.ReLU(), nn.Linear(dim // 2, dim))
        self.kmeans = StreamingKMeans(params.clusters, dim, params.momentum, params.init_threshold,
                                      max(params.queue_size, params.clusters), params.init, params.init_pool)

    def sentence_loss(self, z1: Tensor, z2: Tensor) -> dict[str, Tensor]:
        """``sentence`` = CE([C_i·/τ, extra], i) over unit sentence vectors z1 and their x_s z2 [N_s,D],
        and ``fn`` (weighted L_FN) once the centroids exist."""
        p = self.params
        similarity = z1 @ z2.t()
        logits = similarity / p.temperature
        terms: dict[str, Tensor] = {}
        if p.cluster_negatives:
            found = cluster_negatives(z1, z2, similarity, self.kmeans, self.training, p.hard_negative_scale,
                                      p.margin_low, p.margin_high, p.margin_reduction, p.hard_negative_logits,
                                      p.skip_initialising_step)
            if found.extra_logits is not None:
                logits = torch.cat([logits, found.extra_logits], dim=1)
            if found.margin is not None:
                terms["fn"] = p.fn_weight * found.margin
        targets = torch.arange(len(z1), device=z1.device)
        terms["sentence"] = F.cross_entropy(logits, targets) if len(z1) else similarity.sum() * 0.0
        return terms

    def sentences(self, inputs: AlignmentInputs) -> tuple[Tensor, Tensor]:
        """The sentence vectors the head works on [B,T,D] and their mask [B,T]."""
        text = inputs.text
        if self.params.sentence_vectors == "unit_word_mean":  # cgns_module.py:375-377, gather.py:116-128
            return sentence_means(F.normalize(text.word_emb, dim=-1), text.word_sentence, text.sentence_emb.shape[1])
        if self.params.sentence_vectors == "normalised":
            return F.normalize(text.sentence_emb, dim=-1), text.sentence_mask
        return text.sentence_emb, text.sentence_mask

    def forward(self, inputs: AlignmentInputs) -> dict[str, Tensor]:
        p = self.params
        patches = F.normalize(inputs.image.patch_emb, dim=-1) if p.normalise_patches else inputs.image.patch_emb
        sentences, mask = self.sentences(inputs)
        x_s, x_p = self.attention(patches, sentences, mask)
        inputs.cache[CACHE_KEY] = x_p
        reports = mask.any(1)
        terms = {"patch": simsiam_patch_loss(self.predictor, patches, x_p, reports)}

        z1, z2 = F.normalize(sentences[mask], dim=-1), F.normalize(x_s[mask], dim=-1)  # [N_s, D]
        if inputs.scope == "gathered":  # every process's sentences are candidates (and feed the k-means)
            z1, z2 = gather_rows(z1, inputs.gradient, inputs.world), gather_rows(z2, inputs.gradient, inputs.world)
        terms.update(self.sentence_loss(z1, z2))
        return terms
