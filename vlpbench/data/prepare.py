"""Preparing image stores ahead of time, and estimating what a run needs (``vlpbench data prepare``,
``vlpbench validate``).

``prepare`` builds the store of each requested split (once: a store that exists is only opened and
checked) and reports where it lives, its size and the build rate. The estimates need no data and no
hardware: encoders are built on the CPU to count their parameters and probe their token grid; the
store's size follows from the split sizes (SynthCXR) or the manifest's counts (real datasets, when
their tables can be read); memory is model + optimiser state + token tensors, since images stay in
the memory-mapped store.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlpbench.config.schema import RunConfig
from vlpbench.core.build import build_component
from vlpbench.core.context import BuildContext
from vlpbench.core.plugins import get_registry

GIB = 1024 ** 3
MIB = 1024 ** 2


@dataclass
class PreparedSplit:
    split: str
    count: int
    folder: str
    disk_bytes: int
    seconds: float

    def line(self) -> str:
        rate = f", {self.count / self.seconds:,.0f} images/s" if self.seconds > 0.5 else ""
        return (f"  {self.split}: {self.count:,} images, {self.disk_bytes / MIB:,.1f} MiB in {self.folder} "
                f"({self.seconds:.1f} s{rate})")


def prepare(source: Any, splits: list[str], verify: bool = False) -> list[PreparedSplit]:
    """Build (or open) the store of each split of ``source`` (a built ``dataset`` component)."""
    from vlpbench.data.store import ImageStore

    out = []
    for name in splits:
        started = time.perf_counter()
        split = source.split(name)
        seconds = time.perf_counter() - started
        folder = Path(split.images.filename).parent  # the store's memory map
        store = ImageStore(folder, json.loads((folder / "meta.json").read_text())["key"])
        if verify:
            store.verify()
        out.append(PreparedSplit(name, len(split), str(folder), store.disk_bytes(), seconds))
    return out


def encoder_summary(config: RunConfig) -> str:
    """The image encoder's parameter count and token grid at the run's image size (built on the CPU)."""
    from vlpbench.engine.model import probe_patch_grid  # lazy: torch; validate imports this module

    size = int(config.data.params().get("image_size") or 224)
    context = BuildContext(embed_dim=config.model.embed_dim, image_size=size)
    encoder = build_component(get_registry(), "image_encoder", config.model.image_encoder, context)
    grid = probe_patch_grid(encoder, size)
    count = sum(p.numel() for p in encoder.parameters())
    spec = config.model.image_encoder
    arch = spec.params().get("arch", spec.name)
    text = text_parameters(config)
    text_line = f"; text encoder: {text / 1e6:.2f} M parameters" if text is not None else ""
    return (f"image encoder {arch}: {count / 1e6:.2f} M parameters, {grid[0]}×{grid[1]} = {grid[0] * grid[1]} tokens "
            f"at {size} px{text_line}\n{memory_estimate(config, count)}")


def text_parameters(config: RunConfig) -> int | None:
    """The built-in BERT text encoder's parameter count (at most ``vocab_size`` word pieces), counted
    on the meta device (no memory, no weights read); None for other encoders or a missing folder."""
    spec = config.model.text_encoder
    if spec.name != "bert":
        return None

    import torch  # lazy: torch and transformers; validate imports this module
    from transformers import AutoConfig, AutoModel, BertConfig

    from vlpbench.models.text_bert import BertTextEncoder, LocalModel

    params = BertTextEncoder.Params(**spec.params())
    if params.pretrained:
        local = params.pretrained if isinstance(params.pretrained, LocalModel) else LocalModel(path=params.pretrained)
        try:
            bert_config = AutoConfig.from_pretrained(os.path.expanduser(os.path.expandvars(local.path)), local_files_only=True)
        except (OSError, ValueError):
            return None
    else:
        bert_config = BertConfig(vocab_size=params.vocab_size, hidden_size=params.hidden, num_hidden_layers=params.layers,
                                 num_attention_heads=params.heads, intermediate_size=params.intermediate or 2 * params.hidden,
                                 max_position_embeddings=params.max_tokens)
    with torch.device("meta"):
        model = AutoModel.from_config(bert_config, add_pooling_layer=False)
    return sum(p.numel() for p in model.parameters()) + 2 * (bert_config.hidden_size + 1) * config.model.embed_dim


def memory_estimate(config: RunConfig, image_parameters: int) -> str:
    """Weights, gradients and AdamW state (16 bytes per parameter) and the token tensors (24 bytes
    per token slot and pair); the images are memory-mapped, so they do not count."""
    text = text_parameters(config)
    model_bytes = 16 * (image_parameters + (text or 0))
    pairs = int(config.data.params().get("pretrain_size", 0)) or None
    tokens = int(config.model.text_encoder.params().get("max_tokens", 128))
    token_text = f" + {pairs * tokens * 24 / MIB:,.1f} MiB of tokens" if pairs else " + 24 bytes × max_tokens per pair of tokens"
    text_note = "" if text is not None else " (text encoder not counted)"
    return (f"memory per process ≈ {model_bytes / GIB:.2f} GiB of weights, gradients and AdamW state{text_note}"
            f"{token_text} + activations (batch × tokens × layers); images are memory-mapped")


def _size(config: RunConfig) -> int:
    return int(config.data.params().get("image_size") or 224)


def store_estimate(config: RunConfig) -> str:
    """Disk size of the pretraining split's store, where the split size is known without the data."""
    params = config.data.params()
    size = _size(config)
    if config.data.name == "synthcxr":
        from vlpbench.data.synthcxr_source import SynthCXRSource

        defaults = SynthCXRSource.Params(**params)
        total = sum(getattr(defaults, f"{s}_size") for s in ("pretrain", "train", "val", "test"))
        return (f"image store: {total:,} SynthCXR images at {size} px ≈ {2 * total * size * size / MIB:,.1f} MiB "
                "(images + masks), built once under VLPBENCH_STORE_DIR")
    per_image = size * size
    return (f"image store: {per_image / 1024:.0f} KiB per image at {size} px (MIMIC-CXR's ~217k pretraining images ≈ "
            f"{217_000 * per_image / GIB:.1f} GiB); `vlpbench data prepare {config.data.name} --root ...` builds it "
            "ahead of time")
