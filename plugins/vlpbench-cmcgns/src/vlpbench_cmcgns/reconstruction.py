"""CM-MIR, cross-modal masked image reconstruction [code: cgns/models/backbones/image_decoder.py,
class ``ImageDecoder`` (lines 329-455), called from ``cgns_module.py:284-293,505``].

Both official paths decode the L2-normalised patch tokens P (``cgns_module.py:457``) together with
the text-conditioned patch features x_p of the local cross-attention, and end in the same kind of
convolution head; ``L_rec = 10 · L1(reconstruction, image)`` (``image_decoder.py:451-455``; the
image is resized to the reconstruction when their sizes differ).

- ``transformer`` path (the official ``vit_base`` branch, lines 416-448): drop 50 % of the patch
  tokens in feature space (Bernoulli per token, kept tokens rescaled by 1/(1−p); ``SpatialDropout``,
  lines 79-102); fuse with x_p by multi-head cross-attention (tokens query x_p, 8 heads; lines
  156-168); add a zero-initialised learned positional embedding; a transformer decoder of 6 layers
  that share ONE layer's weights (``_get_clones`` returns the same module; lines 212-228) with
  feed-forward width 2048, post-norm, ReLU, dropout 0.1, where EVERY layer attends to the same
  memory, the decoder input z (``transformer_decoder(z, z)``, line 435; the loop at 218-224); then
  reshape to the patch grid and decode with the convolution head.
- ``convolution`` path (the official ``resnet_50`` branch, lines 398-414; the official CLI default
  encoder): no fusion attention and no transformer: the patch-token map [B,D,h,w] gets channel
  dropout (whole channels zeroed per sample, no rescale) and is concatenated with x_p's map
  [B,D,h,w]; the head decodes the 2D channels.

``path: auto`` picks ``convolution`` for an image encoder that reports ``is_vit = False`` (the
built-in timm encoder with a CNN) and ``transformer`` otherwise.

Convolution head (lines 337-378): stages of Conv3×3–ReLU–Upsample×2 (bilinear, align_corners)
with widths 512, 256, 128, 64, … (``head_width``, halving) until the image size is reached; the
last stage's convolution outputs the image channels, and ``output: relu_tanh`` keeps the official
ReLU before its upsampling and Tanh after it (``linear`` drops both).

Official quirks reproduced by default, each with the cleaner variant as an option:
``decoder_attention: batch`` — the official decoder layers are sequence-first ``nn.MultiheadAttention``
fed batch-first tensors, so each patch position attends across the batch's samples (``patches``:
within each sample); ``mask_at_eval: true`` — ``SpatialDropout`` is built with ``is_train=True`` and
drops tokens at evaluation too (``false``: only while training).

x_p comes from the CM-CGNS cross-attention head when it ran in the same step (``inputs.cache``);
without it, this objective computes its own patch→sentence sigmoid attention, so it can be
combined with any head.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from vlpbench.plugin_api import AlignmentInputs, BuildContext, ConfigError, ModuleComponent
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


def convolution_head(in_channels: int, grid: tuple[int, int], image_size: int, out_channels: int,
                     width: int = 512, floor: int = 16, output: str = "relu_tanh") -> nn.Sequential:
    """Conv3×3–ReLU–Up×2 stages from the patch grid to at least the image size (image_decoder.py:337-378):
    widths ``width``, ``width/2``, …; the last stage's convolution gives ``out_channels``."""
    stages = max(0, math.ceil(math.log2(image_size / max(grid)) - 1e-9))
    upsample = lambda: nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)  # noqa: E731
    layers: list[nn.Module] = []
    channels = in_channels
    for stage in range(stages - 1):
        out = max(floor, width >> stage)
        layers += [nn.Conv2d(channels, out, 3, padding=1), nn.ReLU(), upsample()]
        channels = out
    layers.append(nn.Conv2d(channels, out_channels, 3, padding=1))
    if output == "relu_tanh":
        layers.append(nn.ReLU())
    if stages:
        layers.append(upsample())
    if output == "relu_tanh":
        layers.append(nn.Tanh())
    return nn.Sequential(*layers)


def encoder_path(context: BuildContext) -> str:
    """``convolution`` for an image encoder that says it is not a ViT, else ``transformer``."""
    encoder = context.built.get("image_encoder")
    return "convolution" if getattr(encoder, "is_vit", True) is False else "transformer"


class CrossModalMaskedReconstruction(ModuleComponent["CrossModalMaskedReconstruction.Params"]):
    reference = "arXiv:2506.11674 (CM-CGNS)"
    official_code = "https://github.com/violet-42/CM-CGNS"

    requires = frozenset({"image:patches", "text:sentences"})
    #: Reconstruction compares nothing across processes (the official decoder's attention across
    #: the batch is per process) and masks patches at random per sample, so its negative scope has
    #: no meaning: check-plugin skips its gathered-scope check.
    batch_negatives = False

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        path: Literal["auto", "transformer", "convolution"] = Field(
            "auto", description="official ViT path (fusion + transformer) or ResNet path (channel concat); "
                                "auto: from the image encoder")
        mask_ratio: float = Field(0.5, ge=0, lt=1, description="share of patch tokens (transformer) or channels "
                                                              "(convolution) dropped")
        mask_at_eval: bool = Field(True, description="drop at evaluation too, as the official SpatialDropout does")
        normalise_patches: bool = Field(True, description="decode the L2-normalised patch tokens (official)")
        heads: int = Field(8, ge=1, description="heads of the fusion attention and the decoder")
        depth: int = Field(6, ge=1, description="decoder layers (applications, with share_layers)")
        share_layers: bool = Field(True, description="one layer's weights for every depth (official)")
        feedforward: int = Field(2048, ge=8, description="decoder feed-forward width (official 2048)")
        dropout: float = Field(0.1, ge=0, lt=1, description="decoder dropout")
        decoder_attention: Literal["batch", "patches"] = Field(
            "batch", description="official: each patch position attends across the batch; patches: within a sample")
        head_width: int = Field(512, ge=8, description="width of the first head convolution (then halving)")
        output: Literal["relu_tanh", "linear"] = Field("relu_tanh", description="official ReLU→Tanh output, or linear")
        channels: int = Field(1, ge=1, description="image channels to reconstruct")
        loss_scale: float = Field(10.0, gt=0, description="L_rec = loss_scale · L1")

    def __init__(self, params: "CrossModalMaskedReconstruction.Params", context: BuildContext) -> None:
        super().__init__(params, context)
        dim = context.embed_dim
        self.path = encoder_path(context) if params.path == "auto" else params.path
        self.grid = context.patch_grid or (max(1, context.image_size // 8),) * 2
        self.own_attention = PatchToSentenceAttention(dim)
        if self.path == "transformer":
            if dim % params.heads:
                raise ConfigError(f"cmcgns.mir: heads = {params.heads} must divide the embedding size {dim}; "
                                  "change heads or model.embed_dim.")
            self.fusion = nn.MultiheadAttention(dim, params.heads, batch_first=True)
            self.position = nn.Parameter(torch.zeros(1, dim, *self.grid))
            layer = lambda: nn.TransformerDecoderLayer(  # noqa: E731
                dim, params.heads, params.feedforward, params.dropout,
                batch_first=params.decoder_attention == "patches")
            self.layers = nn.ModuleList([layer()] if params.share_layers else [layer() for _ in range(params.depth)])
        in_channels = dim if self.path == "transformer" else 2 * dim
        self.head = convolution_head(in_channels, self.grid, context.image_size, params.channels,
                                     params.head_width, output=params.output)

    def positional(self, grid: tuple[int, int]) -> Tensor:
        position = self.position if tuple(grid) == tuple(self.grid) else F.interpolate(
            self.position, size=grid, mode="bilinear", align_corners=False)
        return position.flatten(2).transpose(1, 2)  # [1,N,D]

    def keep_mask(self, shape: tuple[int, ...], like: Tensor) -> Tensor:
        """Bernoulli(1 − mask_ratio) keep mask (SpatialDropout's noise, image_decoder.py:94,100), drawn in
        float32 whatever the features' dtype, so float32 and float64 runs drop the same tokens."""
        return (torch.rand(shape, device=like.device) >= self.params.mask_ratio).to(like.dtype)

    def decode_tokens(self, patches: Tensor, conditioned: Tensor, grid: tuple[int, int], drop: bool) -> Tensor:
        """Transformer path → feature map [B,D,h,w]."""
        p = self.params
        if drop:  # image_decoder.py:100-102: per token, rescaled
            patches = patches * self.keep_mask((*patches.shape[:2], 1), patches) / (1 - p.mask_ratio)
        z, _ = self.fusion(patches, conditioned, conditioned, need_weights=False)  # :429
        z = z + self.positional(grid)  # :432
        tokens = z
        for depth in range(p.depth):  # :435 and :218-224: every layer attends to the same memory z
            tokens = self.layers[0 if p.share_layers else depth](tokens, z)
        return tokens.transpose(1, 2).reshape(tokens.shape[0], -1, *grid)  # :438-442

    def decode_channels(self, patches: Tensor, conditioned: Tensor, grid: tuple[int, int], drop: bool) -> Tensor:
        """Convolution path → concatenated feature map [B,2D,h,w]."""
        image = patches.transpose(1, 2).reshape(patches.shape[0], -1, *grid)  # :399-400
        text = conditioned.transpose(1, 2).reshape(conditioned.shape[0], -1, *grid)  # :401-402
        if drop:  # :94-95: whole channels per sample, no rescale
            image = image * self.keep_mask((*image.shape[:2], 1, 1), image)
        return torch.cat([image, text], dim=1)  # :408

    def forward(self, inputs: AlignmentInputs) -> dict[str, Tensor]:
        p = self.params
        patches = inputs.image.patch_emb
        if p.normalise_patches:
            patches = F.normalize(patches, dim=-1)
        conditioned = inputs.cache.get(CACHE_KEY)
        if conditioned is None:
            conditioned = self.own_attention(patches, inputs.text.sentence_emb, inputs.text.sentence_mask)
        drop = p.mask_ratio > 0 and (self.training or p.mask_at_eval)
        decode = self.decode_tokens if self.path == "transformer" else self.decode_channels
        reconstruction = self.head(decode(patches, conditioned, inputs.image.grid, drop))
        images = inputs.batch.images
        if reconstruction.shape[-2:] != images.shape[-2:]:  # :452-453: the image is resized
            images = F.interpolate(images, size=reconstruction.shape[-2:], mode="bilinear", align_corners=True)
        return {"rec": p.loss_scale * F.l1_loss(reconstruction, images)}
