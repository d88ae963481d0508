"""Any timm architecture as an image encoder giving a global vector and patch tokens.

CNNs (``resnet50``, ``convnext_nano``, ...) are whole networks by default: the global vector is
the average-pooled map of the last stage (``global_reduction``, default: the last stage's stride)
and the patch tokens are the map of the stage with ``patch_reduction`` (default 16: a ResNet's
layer3, the region features of MGCA and GLoRIA). Setting ``global_reduction`` to a shallower
stage cuts the network after the deepest stage used (the toy encoders of earlier versions).
ViTs (``vit_base_patch16_224``, ...): the patch tokens are the transformer's output tokens, the
global vector its class token (or the token mean), with ``img_size`` set to the data's size and
the architecture's own patch size unless ``vit_patch_size`` overrides it.

Both are projected to the shared embedding size; the pre-projection features are kept for
downstream tasks. Pretrained weights come only from a local file (``pretrained_path``).

On request of a component (``feature_requests = {"image:cls_attention"}``, see
:mod:`vlpbench.models.requests`) a ViT also publishes the last block's attention of its class token
to each patch (MGCA's patch importance, ``mgca/models/backbones/vits.py:69-74``): the last block's
attention input is kept by a hook and the class-token row is recomputed from it, whatever kernel
(fused SDPA or not) the block runs, so nothing changes and nothing is computed when no component
asks. A CNN has no attention: it grants nothing and ``cls_attention`` stays None (MGCA then uses
uniform patch weights, as its code does for a CNN).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import Tensor, nn

from vlpbench.config.envpath import expand_path
from vlpbench.core.context import BuildContext
from vlpbench.core.module_component import ModuleComponent
from vlpbench.engine.files import file_sha256
from vlpbench.core.errors import ConfigError, DataError, RegistryError, did_you_mean
from vlpbench.core.features import ImageFeatures
from vlpbench.models.cpu_pooling import speed_up_cpu_pooling


class TimmImageEncoder(ModuleComponent["TimmImageEncoder.Params"]):
    provides = frozenset({"global", "patches"})
    #: outputs a component may request (``feature_requests``); only a ViT can give them
    optional_features = frozenset({"cls_attention"})

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        arch: str = Field("resnet18", description="any timm model name")
        pretrained_path: str | None = Field(None, description="local timm/torch checkpoint file")
        pretrained_sha256: str | None = Field(None, description="expected SHA-256 of pretrained_path")
        patch_reduction: int = Field(16, description="CNN: stride of the stage whose map gives the patch tokens "
                                                     "(16: a ResNet's layer3, as MGCA and GLoRIA)")
        global_reduction: int | None = Field(None, description="CNN: stride of the stage pooled for the global vector "
                                                               "(default: the last stage, i.e. the whole network)")
        vit_patch_size: int | None = Field(None, description="ViT: patch size (None keeps the architecture's)")
        vit_global: Literal["cls", "mean"] = "cls"
        drop_path_rate: float = Field(0.0, ge=0, lt=1)

        @field_validator("arch")
        @classmethod
        def _known_arch(cls, value: str) -> str:  # checked by `validate`, not only when the run builds it
            import timm

            if not timm.is_model(value):
                raise ValueError(f"'{value}' is not a timm model{did_you_mean(value, timm.list_models())} "
                                 "(`timm.list_models('*resnet*')` lists names)")
            return value

    def __init__(self, params: "TimmImageEncoder.Params", context: BuildContext) -> None:
        super().__init__(params, context)
        import timm

        pretrained_kwargs = self._pretrained_kwargs(params)
        if not timm.is_model(params.arch):
            raise RegistryError(f"image_encoder.arch = '{params.arch}' is not a timm model; `timm.list_models('*resnet*')` lists names.")
        probe = timm.create_model(params.arch, pretrained=False, num_classes=0, in_chans=1)
        self.is_vit = hasattr(probe, "patch_embed") and hasattr(probe, "num_prefix_tokens")
        if self.is_vit:
            extra = {"patch_size": params.vit_patch_size} if params.vit_patch_size else {}
            self.backbone = timm.create_model(
                params.arch, num_classes=0, in_chans=1, img_size=context.image_size,
                drop_path_rate=params.drop_path_rate, **extra, **pretrained_kwargs,
            )
            patch_dim = global_dim = self.backbone.num_features
            self.out_indices: tuple[int, int] = (0, 0)
            self.stage_strides = (int(self.backbone.patch_embed.patch_size[0]),)
        else:
            reductions = list(timm.create_model(params.arch, features_only=True, in_chans=1).feature_info.reduction())
            want_global = params.global_reduction or reductions[-1]
            for want in (params.patch_reduction, want_global):
                if want not in reductions:
                    raise RegistryError(
                        f"image_encoder: '{params.arch}' has stages with strides {reductions}; "
                        f"patch_reduction/global_reduction = {want} is not one of them."
                    )
            patch_idx, global_idx = reductions.index(params.patch_reduction), reductions.index(want_global)
            # every stage up to the deepest one used: the shallower ones feed dense downstream decoders
            indices = tuple(range(max(patch_idx, global_idx) + 1))
            self.backbone = timm.create_model(
                params.arch, features_only=True, out_indices=indices, in_chans=1,
                drop_path_rate=params.drop_path_rate, **pretrained_kwargs,
            )
            channels = self.backbone.feature_info.channels()
            self.out_indices = (patch_idx, global_idx)
            self.stage_strides = tuple(int(r) for r in self.backbone.feature_info.reduction())
            patch_dim, global_dim = channels[patch_idx], channels[global_idx]
            speed_up_cpu_pooling(self.backbone)  # frozen CPU passes only; same numbers (cpu_pooling)
        self.global_dim, self.patch_dim = global_dim, patch_dim
        self._attention_input: list[Tensor] = []  # the last block's attention input, while requested
        self._attention_hook = None
        self.global_proj = nn.Linear(global_dim, context.embed_dim)
        self.local_proj = nn.Linear(patch_dim, context.embed_dim)

    @staticmethod
    def _pretrained_kwargs(params: "TimmImageEncoder.Params") -> dict:
        if not params.pretrained_path:
            return {"pretrained": False}

        path = Path(expand_path(params.pretrained_path, "image_encoder.pretrained_path"))
        shown = params.pretrained_path  # messages quote the file's text, never the expansion
        if not path.is_file():
            raise DataError(
                f"image_encoder.pretrained_path = '{shown}' does not exist. Give a local timm checkpoint "
                "file (.pth/.safetensors); weights are never downloaded."
            )
        if params.pretrained_sha256:
            actual = file_sha256(path)
            if actual != params.pretrained_sha256.lower():
                raise DataError(f"image_encoder.pretrained_path = '{shown}' has SHA-256 {actual}, not the expected "
                                f"pretrained_sha256 = {params.pretrained_sha256}; the file is not the expected one.")
        return {"pretrained": True, "pretrained_cfg_overlay": {"file": str(path)}}

    def request_features(self, names: set[str]) -> set[str]:
        """Switch on the requested optional outputs this encoder can give; returns those granted
        (a CNN grants no ``cls_attention``)."""
        if "cls_attention" not in names or not self.is_vit:
            return set()
        attention = self.backbone.blocks[-1].attn
        if not all(hasattr(attention, a) for a in ("qkv", "num_heads", "head_dim", "scale")) or not \
                getattr(self.backbone, "cls_token", None) is not None:
            raise RegistryError(f"a component requests image:cls_attention, but '{self.params.arch}' has no class token "
                                "with timm's standard attention (qkv) in its last block to read it from.")
        if self._attention_hook is None:
            self._attention_hook = attention.register_forward_pre_hook(
                lambda module, args: self._attention_input.append(args[0]))
        return {"cls_attention"}

    def last_block_cls_attention(self, layer_input: Tensor) -> Tensor:
        """[B, N]: softmax over all tokens of q_cls·k·scale in the last block, the patch columns,
        mean over heads, no grad (MGCA's ``attention_map[:, :, 0, 1:]`` mean, attention dropout 0)."""
        attention = self.backbone.blocks[-1].attn
        batch, tokens, _ = layer_input.shape
        with torch.no_grad():
            qkv = attention.qkv(layer_input).reshape(batch, tokens, 3, attention.num_heads, attention.head_dim)
            q, k = qkv.permute(2, 0, 3, 1, 4).unbind(0)[:2]
            q, k = attention.q_norm(q), attention.k_norm(k)
            scores = (q[:, :, :1] * attention.scale) @ k.transpose(-2, -1)  # [B, heads, 1, tokens]
            probabilities = torch.softmax(scores.float(), dim=-1).squeeze(2).mean(1)
        return probabilities[:, self.backbone.num_prefix_tokens:].to(layer_input.dtype)

    def encode_maps(self, images: Tensor) -> tuple[Tensor, Tensor, tuple[int, int]]:
        """Pre-projection (global feature [B,C], patch features [B,N,C], grid)."""
        if self.is_vit:
            tokens = self.backbone.forward_features(images)
            prefix = self.backbone.num_prefix_tokens
            patches = tokens[:, prefix:]
            side = self.backbone.patch_embed.grid_size
            pooled = tokens[:, 0] if (self.params.vit_global == "cls" and prefix) else patches.mean(1)
            return pooled, patches, (int(side[0]), int(side[1]))
        maps = self.backbone(images)
        patch_map, global_map = maps[self.out_indices[0]], maps[self.out_indices[1]]
        grid = (patch_map.shape[-2], patch_map.shape[-1])
        return global_map.mean((-2, -1)), patch_map.flatten(2).transpose(1, 2), grid

    def forward(self, images: Tensor) -> ImageFeatures:
        self._attention_input.clear()
        global_feat, patch_feat, grid = self.encode_maps(images)
        attention = None
        if self._attention_input:
            attention = self.last_block_cls_attention(self._attention_input.pop())
            self._attention_input.clear()
        return ImageFeatures(
            global_emb=self.global_proj(global_feat),
            patch_emb=self.local_proj(patch_feat),
            grid=grid,
            global_feat=global_feat,
            patch_feat=patch_feat,
            cls_attention=attention,
        )

    def feature_maps(self, images: Tensor, min_stride: int = 4) -> list[Tensor]:
        """Pre-projection feature maps [B,C,h,w] from fine to coarse, for dense downstream heads.

        CNN: every stage with stride ≥ ``min_stride`` up to the patch stage; ViT: the patch tokens
        as one map (a ViT has a single scale).
        """
        return self.feature_maps_and_global(images, min_stride)[0]

    def feature_maps_and_global(self, images: Tensor, min_stride: int = 4) -> tuple[list[Tensor], Tensor]:
        """:meth:`feature_maps` and the pre-projection global feature [B,C] from one backbone pass
        (an evaluation with dense tasks then runs the encoder once per image, not twice)."""
        if self.is_vit:
            pooled, patches, (h, w) = self.encode_maps(images)
            return [patches.transpose(1, 2).reshape(patches.shape[0], -1, h, w)], pooled
        maps = self.backbone(images)
        pooled = maps[self.out_indices[1]].mean((-2, -1))
        maps = maps[: self.out_indices[0] + 1]
        kept = [m for m, stride in zip(maps, self.stage_strides) if stride >= min_stride]
        return kept or [maps[-1]], pooled

    def freeze_stages(self, stages: int) -> None:
        """Freeze the first ``stages`` stages (``pretrain.freeze_image_stages``). CNN: the stages of
        timm's ``feature_info`` (ResNet: 1 = the stem, 2 = stem + layer1, …); ViT: 1 = the patch
        embedding (with class token and positions), k = it and the first k − 1 blocks."""
        if self.is_vit:
            blocks = list(self.backbone.blocks)
            if stages > len(blocks) + 1:
                raise ConfigError(f"pretrain.freeze_image_stages = {stages}, but the ViT has {len(blocks) + 1} stages "
                                  "(patch embedding + blocks).")
            for name in ("patch_embed", "cls_token", "pos_embed", "reg_token"):
                part = getattr(self.backbone, name, None)
                if isinstance(part, nn.Module):
                    part.requires_grad_(False)
                elif isinstance(part, nn.Parameter):
                    part.requires_grad_(False)
            for block in blocks[:stages - 1]:
                block.requires_grad_(False)
            return
        names = self.backbone.feature_info.module_name()
        if stages > len(names):
            raise ConfigError(f"pretrain.freeze_image_stages = {stages}, but '{self.params.arch}' as built here has "
                              f"{len(names)} stages ({', '.join(names)}).")
        last = names[stages - 1].split(".")[0]
        for name, child in self.backbone.named_children():
            child.requires_grad_(False)
            if name == last:
                break

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute activations stage by stage in the backward pass (timm's own checkpointing)."""
        self.backbone.set_grad_checkpointing(enable)

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @torch.no_grad()
    def global_features(self, images: Tensor) -> Tensor:
        """Frozen pre-projection global features (what the linear probe trains on)."""
        return self.encode_maps(images)[0]
