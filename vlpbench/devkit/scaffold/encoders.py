"""The example encoders and dataset ``vlpbench new-plugin`` writes (kind → (module name, class name,
summary, source), merged into :data:`vlpbench.devkit.scaffold.components.MODULES`): a small CNN image
encoder with every feature the tasks read, a labelled image folder read from a local copy, and a
small transformer text encoder over a WordPiece vocabulary learnt from the reports."""

DATA_MODULES: dict[str, tuple[str, str, str, str]] = {
    "image_encoder": ("encoder", "SmallConvEncoder", "a small three-stage CNN (strides 2, 4, 8) with every feature the tasks read", """
from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from vlpbench.plugin_api import ImageFeatures, ModuleComponent


class SmallConvEncoder(ModuleComponent["SmallConvEncoder.Params"]):
    {docstring}

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        channels: int = Field(32, ge=4, description="channels of the first stage (doubled per stage)")

    def __init__(self, params: "SmallConvEncoder.Params", context) -> None:
        super().__init__(params, context)  # stores self.params and self.context
        widths = [params.channels, 2 * params.channels, 4 * params.channels]
        stages, previous = [], 1  # vlpbench feeds one grey channel
        for width in widths:
            stages.append(nn.Sequential(nn.Conv2d(previous, width, 3, stride=2, padding=1), nn.BatchNorm2d(width),
                                        nn.ReLU(inplace=True)))
            previous = width
        self.stages = nn.ModuleList(stages)
        self.stage_strides = (2, 4, 8)
        self.global_dim = self.patch_dim = widths[-1]
        self.global_proj = nn.Linear(widths[-1], context.embed_dim)
        self.local_proj = nn.Linear(widths[-1], context.embed_dim)

    def _maps(self, images: Tensor) -> list[Tensor]:
        maps, x = [], images
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        return maps

    def forward(self, images: Tensor) -> ImageFeatures:
        last = self._maps(images)[-1]  # [B,C,h,w], stride 8: the patch tokens and the pooled global vector
        global_feat = last.mean((-2, -1))
        patch_feat = last.flatten(2).transpose(1, 2)
        return ImageFeatures(global_emb=self.global_proj(global_feat), patch_emb=self.local_proj(patch_feat),
                             grid=(last.shape[-2], last.shape[-1]), global_feat=global_feat, patch_feat=patch_feat)

    def global_features(self, images: Tensor) -> Tensor:
        \"\"\"Pre-projection global features [B,C] (linear probes).\"\"\"
        return self._maps(images)[-1].mean((-2, -1))

    def feature_maps(self, images: Tensor, min_stride: int = 4) -> list[Tensor]:
        \"\"\"Feature maps [B,C,h,w] from fine to coarse with stride >= min_stride (segmentation, detection).\"\"\"
        maps = self._maps(images)
        kept = [m for m, stride in zip(maps, self.stage_strides) if stride >= min_stride]
        return kept or [maps[-1]]
"""),
}

DATA_MODULES["dataset"] = ("dataset", "CsvFolderDataset", "a labelled image folder read from your local copy: labels.csv (filename, split, one 0/1 column per finding) and images/", """
from __future__ import annotations

import csv
from typing import Any

import numpy as np
from pydantic import Field

from vlpbench.plugin_api import DataError, RealDataset, RealParams, Record

SPLITS = ("train", "val", "test")


class CsvFolderDataset(RealDataset):
    {docstring}

    name = "{plugin}.dataset"  # the registered name: messages and the image store use it
    protocol_version = "{plugin}-csv-1"  # raise it whenever the recipe (splits, labels) changes
    label_names = ("finding_a", "finding_b")  # your findings: the table's 0/1 columns, in this order
    label_type = "multilabel"

    class Params(RealParams):
        table: str = Field("labels.csv", description="the table, relative to root")

    def layout(self) -> list[tuple[str, str]]:
        return [(self.params.table, "one row per image: filename, split (train/val/test), one 0/1 column per "
                                    "finding, optional patient"), ("images", "the images the table names")]

    def recipe(self) -> dict[str, Any]:
        return {{"name": "table", "splits": f"the 'split' column of {{self.params.table}}"}}

    def read_records(self) -> dict[str, list[Record]]:
        path = self.root / self.params.table
        if not path.is_file():
            raise DataError(f"dataset '{{self.name}}': {{path}} is missing; it lists the images (see layout()).")
        records: dict[str, list[Record]] = {{split: [] for split in SPLITS}}
        with path.open(newline="", encoding="utf-8") as handle:
            for number, row in enumerate(csv.DictReader(handle), start=2):  # line 1 is the header
                split = (row.get("split") or "").strip()
                if split not in records:
                    raise DataError(f"dataset '{{self.name}}': {{path}}, line {{number}}: split '{{split}}' is not one of "
                                    f"{{', '.join(SPLITS)}}.")
                try:
                    labels = np.array([int(row[finding]) for finding in self.label_names], np.uint8)
                except (KeyError, TypeError, ValueError):
                    raise DataError(f"dataset '{{self.name}}': {{path}}, line {{number}}: every finding column "
                                    f"({{', '.join(self.label_names)}}) needs 0 or 1.") from None
                filename = row["filename"]
                records[split].append(Record(id=filename, image=self.root / "images" / filename,
                                             source=self.params.table, lines=(number,), labels=labels,
                                             patient=row.get("patient") or filename))
        self.table_counts = {{f"{{self.params.table}} rows": sum(map(len, records.values()))}}
        return records
""")

DATA_MODULES["text_encoder"] = ("text_encoder", "SmallTransformerTextEncoder", "a small transformer over a WordPiece vocabulary learnt from the pretraining reports: global, word and sentence embeddings", """
from __future__ import annotations

from typing import Sequence

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from vlpbench.plugin_api import (BuildContext, ConfigError, DataError, ModuleComponent, TextFeatures, TokenizedReports,
                                 pack_reports, sentence_means, train_wordpiece)


class SmallTransformerTextEncoder(ModuleComponent["SmallTransformerTextEncoder.Params"]):
    {docstring}

    provides = frozenset({{"global", "words", "sentences"}})  # what `requires = {{"text:..."}}` may ask of it

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        layers: int = Field(2, ge=1, description="transformer layers")
        hidden: int = Field(64, ge=8, description="width of the token vectors")
        heads: int = Field(2, ge=1, description="attention heads (must divide hidden)")
        vocab_size: int = Field(2000, ge=100, description="most WordPiece tokens learnt from the corpus")
        max_tokens: int = Field(128, ge=8, description="tokens per report, [CLS] and [SEP] included")
        max_sentences: int = Field(16, ge=1, description="sentences kept per report (the engine reads this)")
        dropout: float = Field(0.1, ge=0, lt=1)

    def __init__(self, params: "SmallTransformerTextEncoder.Params", context: BuildContext) -> None:
        super().__init__(params, context)  # stores self.params and self.context
        if params.hidden % params.heads:
            raise ConfigError(f"text_encoder: hidden = {{params.hidden}} is not divisible by heads = {{params.heads}}; "
                              "choose heads that divide hidden.")
        if not context.corpus:
            raise DataError("the {plugin}.text_encoder learns its vocabulary from the pretraining reports, and the "
                            "dataset gave none. Use a dataset with reports.")
        # A wrapper of a local Hugging Face model (e.g. a clinical BERT) would load its tokenizer and weights
        # here with local_files_only=True instead (see vlpbench/models/text_bert.py, `pretrained`).
        self._tokenizer = train_wordpiece(context.corpus, params.vocab_size)
        # vocab_size rows whatever the corpus gives, so a checkpoint (vocabulary included) loads into an
        # encoder built from any corpus; rows past the learnt vocabulary are never read
        self.token_emb = nn.Embedding(max(params.vocab_size, self._tokenizer.get_vocab_size()), params.hidden)
        self.position_emb = nn.Embedding(params.max_tokens, params.hidden)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(params.hidden, params.heads, 2 * params.hidden, params.dropout,
                                       activation="gelu", batch_first=True, norm_first=True)
            for _ in range(params.layers))
        self.norm = nn.LayerNorm(params.hidden)
        self.global_proj = nn.Linear(params.hidden, context.embed_dim)  # t: the mean token, projected
        self.local_proj = nn.Linear(params.hidden, context.embed_dim)  # W (and S, the mean of W per sentence)
        self.grad_checkpointing = False

    # -- tokenizer: vlpbench's packing, so the loader's sentence shuffle and the tasks read it ---------------
    def tokenize(self, reports: Sequence[Sequence[str]]) -> TokenizedReports:
        \"\"\"Reports as lists of sentences → padded ids [n,M], attention mask and a sentence index per token
        (-1 for [CLS], [SEP] and padding); sentences that do not fit are dropped whole.\"\"\"
        ids = [self._tokenizer.token_to_id(t) for t in ("[CLS]", "[SEP]", "[PAD]")]
        encode = lambda sentences: [e.ids for e in self._tokenizer.encode_batch(sentences, add_special_tokens=False)]  # noqa: E731
        return pack_reports(reports, encode, *ids, self.params.max_tokens, self.params.max_sentences)

    def get_extra_state(self) -> str:
        \"\"\"The learnt vocabulary travels in the state dict, so a checkpoint is self-contained.\"\"\"
        return self._tokenizer.to_str()

    def set_extra_state(self, state: str) -> None:
        if state:
            from tokenizers import Tokenizer

            tokenizer = Tokenizer.from_str(state)
            if tokenizer.get_vocab_size() > self.token_emb.num_embeddings:
                raise ConfigError(f"the checkpoint's vocabulary has {{tokenizer.get_vocab_size()}} tokens, more than this "
                                  f"encoder's {{self.token_emb.num_embeddings}} embeddings; build it with the "
                                  "checkpoint's vocab_size.")
            self._tokenizer = tokenizer

    # -- options the engine calls when a config asks for them ---------------------------------------------------
    def freeze_layers(self, layers: int) -> None:
        \"\"\"Freeze the embeddings and the first ``layers`` blocks (``pretrain.freeze_text_layers``).\"\"\"
        if layers > len(self.blocks):
            raise ConfigError(f"pretrain.freeze_text_layers = {{layers}}, but the text encoder has {{len(self.blocks)}} "
                              "layers.")
        for module in (self.token_emb, self.position_emb, *self.blocks[:layers]):
            module.requires_grad_(False)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        \"\"\"Recompute each block's activations in the backward pass (``pretrain.grad_checkpointing``).\"\"\"
        self.grad_checkpointing = enable

    # -- forward -------------------------------------------------------------------------------------------------
    def forward(self, input_ids: Tensor, attention_mask: Tensor, sentence_index: Tensor,
                num_sentences: int | None = None) -> TextFeatures:
        \"\"\"Token ids [B,M] → t [B,D], W [B,M,D] (+ word mask), S [B,T,D] (+ sentence mask).
        ``num_sentences`` (T, which the loader knows) spares a device-to-host read; it may be omitted.\"\"\"
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.token_emb(input_ids) + self.position_emb(positions)
        padding = attention_mask == 0  # True: ignored by attention
        for block in self.blocks:
            if self.grad_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(block, x, None, padding, use_reentrant=False)
            else:
                x = block(x, src_key_padding_mask=padding)
        hidden = self.norm(x)  # [B,M,H]
        words = self.local_proj(hidden)  # [B,M,D]
        sentences, sentence_mask = sentence_means(words, sentence_index, num_sentences)
        weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
        global_emb = self.global_proj((hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0))
        return TextFeatures(global_emb=global_emb, word_emb=words, word_mask=sentence_index >= 0,
                            sentence_emb=sentences, sentence_mask=sentence_mask, word_sentence=sentence_index)
""")
