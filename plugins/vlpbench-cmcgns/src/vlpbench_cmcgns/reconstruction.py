"""CM-MIR, cross-modal masked image reconstruction [code: backbones/image_decoder.py, ViT path].

Half of the patch tokens are dropped in feature space (zeroed, the rest rescaled by 1/(1−p), as the
official ViT path does); the tokens then attend (multi-head cross-attention) to the
text-conditioned patch features x_p; a learned positional embedding (zero-initialised) is added;
a small transformer decoder runs — the official one applies one layer's weights 6 times
(``share_layers``) — and the tokens are reshaped to the patch grid, then convolutions with ×2
bilinear upsampling bring them to the input size. ``L_rec = 10 · L1(reconstruction, image)`` over
all pixels.

x_p comes from the CM-CGNS cross-attention head when it ran in the same step (``inputs.cache``);
without it, this objective computes its own patch→sentence sigmoid attention, so it can be
combined with any head. Interpretations (documented): the same token path serves CNN and ViT
encoders (the official ResNet path concatenates channels instead); the output is linear and the
target is the normalised input image (the official head ends in ReLU→Tanh on its own image range);
the decoder is batch-first (the official one attends across the batch by mistake).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from vlpbench.context import BuildContext
from vlpbench.features import AlignmentInputs
from vlpbench_cmcgns.cross_attention import CACHE_KEY


class PatchToSentenceAttention(nn.Module):
    """x_p = sigmoid((W_q P)(W_k S)ᵀ/√D)(W_v S), padded sentences masked (used without the head)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.query, self.key, self.value = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)

    def forward(self, patches: Tensor, sentences: Tensor, mask: Tensor) -> Tensor:
        weights = torch.sigmoid(self.query(patches) @ self.key(sentences).transpose(1, 2) / math.sqrt(self.dim))
        return (weights * mask.unsqueeze(1).to(weights.dtype)) @ self.value(sentences)


def upsampling_head(dim: int, grid: tuple[int, int], image_size: int, floor: int = 16) -> tuple[nn.Sequential, int]:
    """Conv3×3–ReLU–Up×2 stages from the patch grid up to the image size, then a 1×1 conv."""
    layers: list[nn.Module] = []
    channels, side = dim, max(grid)
    while side < image_size:
        out = max(floor, channels // 2)
        layers += [nn.Conv2d(channels, out, 3, padding=1), nn.ReLU(), nn.Upsample(scale_factor=2, mode="bilinear")]
        channels, side = out, side * 2
    layers.append(nn.Conv2d(channels, 1, 1))
    return nn.Sequential(*layers), side


class CrossModalMaskedReconstruction(nn.Module):
    requires = frozenset({"image:patches", "text:sentences"})
    #: Reconstruction compares nothing across the batch (and masks patches at random per sample),
    #: so its negative scope has no meaning: check-plugin skips its gathered-scope check.
    batch_negatives = False

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        mask_ratio: float = Field(0.5, ge=0, lt=1, description="share of patch tokens dropped")
        heads: int = Field(8, ge=1, description="heads of the fusion attention and the decoder")
        depth: int = Field(6, ge=1, description="decoder layers (applications, with share_layers)")
        share_layers: bool = Field(True, description="one layer's weights for every depth (official)")
        feedforward: int = Field(512, ge=8)
        dropout: float = Field(0.1, ge=0, lt=1)
        loss_scale: float = Field(10.0, gt=0, description="L_rec = loss_scale · L1")

    def __init__(self, params: "CrossModalMaskedReconstruction.Params", context: BuildContext) -> None:
        super().__init__()
        self.params = params
        dim = context.embed_dim
        if dim % params.heads:
            from vlpbench.errors import ConfigError

            raise ConfigError(f"cmcgns.mir: heads = {params.heads} must divide the embedding size {dim}.")
        self.grid = context.patch_grid or (max(1, context.image_size // 8),) * 2
        self.own_attention = PatchToSentenceAttention(dim)
        self.fusion = nn.MultiheadAttention(dim, params.heads, batch_first=True)
        self.position = nn.Parameter(torch.zeros(1, dim, *self.grid))
        layer = lambda: nn.TransformerDecoderLayer(dim, params.heads, params.feedforward, params.dropout,  # noqa: E731
                                                   batch_first=True)
        self.layers = nn.ModuleList([layer()] if params.share_layers else [layer() for _ in range(params.depth)])
        self.head, _ = upsampling_head(dim, self.grid, context.image_size)

    def positional(self, grid: tuple[int, int]) -> Tensor:
        position = self.position if tuple(grid) == tuple(self.grid) else F.interpolate(
            self.position, size=grid, mode="bilinear", align_corners=False)
        return position.flatten(2).transpose(1, 2)  # [1,N,D]

    def forward(self, inputs: AlignmentInputs) -> dict[str, Tensor]:
        p = self.params
        patches = inputs.image.patch_emb
        conditioned = inputs.cache.get(CACHE_KEY)
        if conditioned is None:
            conditioned = self.own_attention(patches, inputs.text.sentence_emb, inputs.text.sentence_mask)
        if self.training and p.mask_ratio > 0:
            keep = (torch.rand(patches.shape[0], patches.shape[1], 1, device=patches.device) >= p.mask_ratio)
            patches = patches * keep.to(patches.dtype) / (1.0 - p.mask_ratio)
        tokens, _ = self.fusion(patches, conditioned, conditioned, need_weights=False)
        tokens = tokens + self.positional(inputs.image.grid)
        for depth in range(p.depth):
            layer = self.layers[0 if p.share_layers else depth]
            tokens = layer(tokens, tokens)
        h, w = inputs.image.grid
        images = inputs.batch.images
        feature_map = tokens.transpose(1, 2).reshape(tokens.shape[0], -1, h, w)
        reconstruction = self.head(feature_map)
        if reconstruction.shape[-2:] != images.shape[-2:]:
            reconstruction = F.interpolate(reconstruction, size=images.shape[-2:], mode="bilinear", align_corners=False)
        return {"rec": p.loss_scale * F.l1_loss(reconstruction, images)}
