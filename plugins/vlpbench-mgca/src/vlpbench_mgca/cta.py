"""MGCA's token-wise cross-modal alignment, CTA [code: mgca/models/mgca/mgca_module.py:119-227].

Per pair b, τ = 0.1, L2-normalised word tokens w_1…w_M (after [CLS]: words, [SEP] and padding) and
patch tokens p_1…p_N:

- word side: ``a_in = softmax_n(w_i·p_n/τ)`` over all patches (padding words are not masked, as in
  the code: the mask line is commented out), ``cw_i = norm(Σ_n a_in p_n)``,
  ``Sw_ij = w_i·cw_j/τ`` over all M positions; ``L_w1 = Σ_b Σ_i ω_bi CE(Sw_b[i,·], i)/B``,
  ``L_w2 = Σ_b Σ_j ω_bj CE(Sw_b[·,j], j)/B``, ``L_word = (L_w1 + L_w2)/2``;
- patch side: ``b_nk = softmax_k(p_n·w_k/τ)`` over the non-padding words, ``cp_n = Σ_k b_nk w_k``,
  L2-normalised only for a CNN (not for a ViT, as in the code), ``Sp_nm = p_n·cp_m/τ``;
  ``L_patch = (L_p1 + L_p2)/2`` with the patch weights ω′;
- ``L_local = L_word + L_patch`` (term ``local``).

Importance weights ω (words) and ω′ (patches) come from the encoders' last attention layer:
the attention of [CLS] to each token, mean over heads. The component requests them through the
encoder interface (``feature_requests = {"text:cls_attention", "image:cls_attention"}``, see
``vlpbench.models.requests``): the built-in BERT publishes ``TextFeatures.cls_attention`` [B, M]
(every token position, [CLS] first) and a timm ViT ``ImageFeatures.cls_attention`` [B, N]; a CNN has
none, and without them the weights are uniform over the non-padding words (and over the patches,
which is what the official code does for a CNN). ``importance: uniform`` asks for nothing and uses
uniform weights. When the text encoder aggregates word pieces (``word_pieces: sum``, MGCA's
``aggregate_tokens``), a word's weight is the SUM of its pieces' attention, as in the official code
(``encoder.py:336,352,360``). Words: the non-zero entries clipped to their [10 %, 90 %] quantiles,
zeros kept, divided by the row sum (lines 140-153); patches: all entries clipped, divided by the sum
(lines 196-205).

``word_alignment``: the official ``aggregate_tokens`` zips the attention vector (which starts at
token 1) with the tokens (starting at 0), so every token receives the attention of the token to its
right — the last real word gets [SEP]'s and [SEP] gets the first padding's (0)
(``backbones/encoder.py:320,329,382``). ``corrected`` (default) gives each token its own attention;
``official_off_by_one`` reproduces the shift (before the pieces are summed into words, as there).
Only used when the text attention is given.

Compares tokens within each pair only: nothing across the batch (``batch_negatives = False``).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from vlpbench.plugin_api import AlignmentInputs, BuildContext, ModuleComponent, aggregate, slot_mask


def clipped_weights(attention: Tensor, nonzero_only: bool, low: float = 0.1, high: float = 0.9) -> Tensor:
    """Per row: clip to the [low, high] quantiles (linear, as torch.quantile) of the row's non-zero
    entries (``nonzero_only``) or of all entries, keep zeros, divide by the row sum. No gradient."""
    attention = attention.detach()
    pool = attention.masked_fill(attention == 0, float("nan")) if nonzero_only else attention
    bounds = torch.nanquantile(pool, torch.tensor([low, high], dtype=attention.dtype, device=attention.device),
                               dim=1, keepdim=True)  # [2, B, 1]
    clipped = torch.minimum(torch.maximum(attention, bounds[0]), bounds[1])
    if nonzero_only:
        clipped = torch.where(attention == 0, torch.zeros_like(clipped), clipped)
    clipped = torch.nan_to_num(clipped, nan=0.0)
    return clipped / clipped.sum(1, keepdim=True).clamp_min(1e-12)


def token_attention(attention: Tensor, alignment: str) -> Tensor:
    """[B, M] attention of [CLS] per token position → the attention each token is credited with:
    its own (``corrected``), or the next token's, the last position getting 0 (``official_off_by_one``)."""
    if alignment == "official_off_by_one":
        return torch.cat([attention[:, 1:], attention.new_zeros(attention.shape[0], 1)], dim=1)
    return attention


def word_attention(attention: Tensor, alignment: str, piece_word: Tensor | None = None) -> Tensor:
    """[B, M] attention of [CLS] per token position → per word position 1… (``word_emb[:, 1:]``):
    per token, or summed over each word's pieces when the encoder aggregated them (``piece_word``)."""
    credited = token_attention(attention, alignment)
    if piece_word is not None:
        credited = aggregate(credited, piece_word, "sum")
    return credited[:, 1:]


def weighted_token_infonce(similarity: Tensor, weights: Tensor) -> tuple[Tensor, Tensor]:
    """Σ_b Σ_i ω_bi CE(S_b[i,·], i) and Σ_b Σ_j ω_bj CE(S_b[·,j], j) (each / B) for S [B, T, T]."""
    diagonal = similarity.diagonal(dim1=1, dim2=2)
    rows = torch.logsumexp(similarity, dim=2) - diagonal
    columns = torch.logsumexp(similarity, dim=1) - diagonal
    batch = similarity.shape[0]
    return (weights * rows).sum() / batch, (weights * columns).sum() / batch


class TokenAlignment(ModuleComponent["TokenAlignment.Params"]):
    """CTA (see the module docstring); term ``local`` = L_word + L_patch."""

    reference = "Wang et al., MGCA, NeurIPS 2022"
    official_code = "https://github.com/HKU-MedAI/MGCA"

    requires = frozenset({"image:patches"})
    batch_negatives = False

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        temperature: float = Field(0.1, gt=0, description="τ of the attention and of the token InfoNCE (local_temperature)")
        bidirectional: bool = Field(True, description="add the patch side (official: true)")
        word_alignment: Literal["corrected", "official_off_by_one"] = Field(
            "corrected", description="which token's attention a word gets: its own, or the next token's (official bug)")
        patch_context_norm: Literal["official", "always", "never"] = Field(
            "official", description="L2-normalise the patch contexts: official = for a CNN only, not for a ViT")
        quantiles: tuple[float, float] = Field((0.1, 0.9), description="clip range of the importance weights")
        importance: Literal["attention", "uniform"] = Field(
            "attention", exclude_if=lambda value: value == "attention",
            description="importance weights from the encoders' last-layer [CLS] attention where they give it "
                        "(official), or uniform")

    def __init__(self, params: "TokenAlignment.Params", context: BuildContext | None = None) -> None:
        super().__init__(params, context)
        encoder = context.built.get("image_encoder") if context is not None else None
        is_vit = bool(getattr(encoder, "is_vit", False))
        self.normalise_patch_context = {"official": not is_vit, "always": True, "never": False}[params.patch_context_norm]
        #: the encoder outputs this head asks for (``vlpbench.models.requests``)
        self.feature_requests = (frozenset({"text:cls_attention", "image:cls_attention"})
                                 if params.importance == "attention" else frozenset())

    def weights(self, inputs: AlignmentInputs, nonpad: Tensor, patches: int) -> tuple[Tensor, Tensor]:
        dtype = inputs.text.word_emb.dtype
        low, high = self.params.quantiles
        use = self.params.importance == "attention"
        text_attention = inputs.text.cls_attention if use else None
        if text_attention is None:
            word = nonpad.to(dtype)
        else:
            word = word_attention(text_attention.to(dtype), self.params.word_alignment, inputs.text.piece_word) * nonpad
        image_attention = inputs.image.cls_attention if use else None
        if image_attention is None:
            patch = torch.ones(nonpad.shape[0], patches, dtype=dtype, device=nonpad.device)
        else:
            patch = image_attention.to(dtype)
        return (clipped_weights(word, nonzero_only=True, low=low, high=high),
                clipped_weights(patch, nonzero_only=False, low=low, high=high))

    def forward(self, inputs: AlignmentInputs) -> dict[str, Tensor]:
        tau = self.params.temperature
        words = F.normalize(inputs.text.word_emb[:, 1:], dim=-1)  # [B, M, D]: words, [SEP], padding
        slots = inputs.text.piece_word  # set when the encoder aggregated word pieces into words
        nonpad = (inputs.batch.attention_mask > 0 if slots is None else slot_mask(slots))[:, 1:]
        patches = F.normalize(inputs.image.patch_emb, dim=-1)  # [B, N, D]
        word_weights, patch_weights = self.weights(inputs, nonpad, patches.shape[1])
        # word side
        attention = torch.softmax(words @ patches.transpose(1, 2) / tau, dim=-1)  # [B, M, N]
        word_context = F.normalize(attention @ patches, dim=-1)
        w1, w2 = weighted_token_infonce(words @ word_context.transpose(1, 2) / tau, word_weights)
        local = (w1 + w2) / 2
        if self.params.bidirectional:
            # a report without any token after [CLS] (never in the official data, which always has a
            # [SEP]) has nothing for its patches to attend to: its patch side is left out (weight 0)
            has_tokens = nonpad.any(1, keepdim=True)
            patch_weights = patch_weights * has_tokens
            keep = nonpad | ~has_tokens
            scores = (patches @ words.transpose(1, 2)).masked_fill(~keep[:, None, :], float("-inf"))
            patch_context = torch.softmax(scores / tau, dim=-1) @ words  # [B, N, D]
            if self.normalise_patch_context:
                patch_context = F.normalize(patch_context, dim=-1)
            p1, p2 = weighted_token_infonce(patches @ patch_context.transpose(1, 2) / tau, patch_weights)
            local = local + (p1 + p2) / 2
        return {"local": local}
