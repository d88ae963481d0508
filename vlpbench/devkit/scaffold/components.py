"""The example components ``vlpbench new-plugin`` writes: one working, vectorised module per kind
(``MODULES``: kind → (module name, class name, summary, source)), each with a docstring template
(``DOCSTRING``) asking for the source paper, the formula and every interpretation."""

DOCSTRING = '''"""{summary}

Source: <paper title, arXiv id or venue; official code repository and file, if any>.
Formula: <the formula this implements, in the notation of vlpbench's METHODS.md>.
Interpretation: <every choice the source does not fix, and the alternatives kept configurable>.
"""'''

MODULES = {
    "positive_miner": ("miner", "SimilarityMiner", "pairs whose detached text embeddings are similar become positives", '''
from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from vlpbench.plugin_api import AlignmentInputs, Positives


class SimilarityMiner(nn.Module):
    {docstring}

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        threshold: float = Field(0.95, description="cosine above which two reports count as the same")

    def __init__(self, params: "SimilarityMiner.Params", context=None) -> None:
        super().__init__()
        self.params = params

    def forward(self, inputs: AlignmentInputs) -> Positives:
        text = F.normalize(inputs.text.global_emb.detach(), dim=-1)  # detached: a miner sends no gradient
        similar = (text @ text.t()) > self.params.threshold
        eye = torch.eye(len(text), dtype=torch.bool, device=text.device)
        return Positives((similar | eye).to(inputs.image.global_emb.dtype))
'''),
    "negative_weighting": ("weighting", "HardnessWeighting", "up-weights hard negatives: Ω_ij = 1 + α·max(cos(v_i, t_j), 0)", '''
from __future__ import annotations

import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from vlpbench.plugin_api import AlignmentInputs, DirectionAdjustment, NegativeAdjustment, Positives


class HardnessWeighting(nn.Module):
    {docstring}

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        alpha: float = Field(1.0, ge=0, description="extra weight of a negative per unit of cosine")

    def __init__(self, params: "HardnessWeighting.Params", context=None) -> None:
        super().__init__()
        self.params = params

    def forward(self, inputs: AlignmentInputs, positives: Positives) -> NegativeAdjustment:
        v = F.normalize(inputs.image.global_emb, dim=-1)
        t = F.normalize(inputs.text.global_emb, dim=-1)
        weight = 1.0 + self.params.alpha * (v @ t.t()).detach().clamp_min(0)
        return NegativeAdjustment(DirectionAdjustment(weight=weight), DirectionAdjustment(weight=weight.t()))
'''),
    "local_head": ("head", "MaxSimilarityHead", "word-patch max-similarity alignment (FILIP-style), within each report", '''
from __future__ import annotations

import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from vlpbench.plugin_api import AlignmentInputs, mean_over_reports


class MaxSimilarityHead(nn.Module):
    {docstring}

    requires = frozenset({{"image:patches", "text:words"}})

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        temperature: float = Field(0.1, gt=0)

    def __init__(self, params: "MaxSimilarityHead.Params", context=None) -> None:
        super().__init__()
        self.params = params

    def forward(self, inputs: AlignmentInputs) -> dict[str, Tensor]:
        words = F.normalize(inputs.text.word_emb, dim=-1)  # [B,M,D]
        patches = F.normalize(inputs.image.patch_emb, dim=-1)  # [B,N,D]
        mask = inputs.text.word_mask
        best = (words @ patches.transpose(1, 2)).amax(-1) / self.params.temperature  # [B,M]
        per_report = -(best * mask).sum(1) / mask.sum(1).clamp_min(1)  # pull each word to its best patch
        return {{"maxsim": mean_over_reports(per_report, mask.any(1))}}
'''),
}

MODULES.update({
    "auxiliary": ("auxiliary", "CrossModalRegression", "predicts each image's global embedding from its report's (per-sample, no negatives)", """
from __future__ import annotations

import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from vlpbench.plugin_api import AlignmentInputs


class CrossModalRegression(nn.Module):
    {docstring}

    requires = frozenset()
    batch_negatives = False  # a per-sample term: it compares nothing across the batch

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        hidden: int = Field(64, ge=1, description="width of the predictor's hidden layer")

    def __init__(self, params: "CrossModalRegression.Params", context=None) -> None:
        super().__init__()
        self.params = params
        dim = context.embed_dim if context is not None else 32
        self.predictor = nn.Sequential(nn.Linear(dim, params.hidden), nn.GELU(), nn.Linear(params.hidden, dim))

    def forward(self, inputs: AlignmentInputs) -> dict[str, Tensor]:
        target = F.normalize(inputs.image.global_emb.detach(), dim=-1)  # stop-gradient target
        predicted = F.normalize(self.predictor(inputs.text.global_emb), dim=-1)
        return {{"regression": (predicted - target).square().sum(-1).mean()}}
"""),
    "global_loss": ("loss", "FixedTemperatureInfoNCE", "symmetric InfoNCE with a fixed temperature and label smoothing towards the positives", """
from __future__ import annotations

import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from vlpbench.plugin_api import DirectionAdjustment, Positives, soft_infonce_direction


class FixedTemperatureInfoNCE(nn.Module):
    {docstring}

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        temperature: float = Field(0.1, gt=0, description="fixed temperature τ")

    def __init__(self, params: "FixedTemperatureInfoNCE.Params", context=None) -> None:
        super().__init__()
        self.params = params

    def forward(self, image: Tensor, text: Tensor, positives: Positives,
                i2t: DirectionAdjustment, t2i: DirectionAdjustment) -> Tensor:
        # soft_infonce_direction applies the miner's positives and the weightings' adjustments
        logits = F.normalize(image, dim=-1) @ F.normalize(text, dim=-1).t() / self.params.temperature
        return 0.5 * (soft_infonce_direction(logits, positives, i2t)
                      + soft_infonce_direction(logits.t(), positives.transposed(), t2i))
"""),
    "task": ("task", "PrototypeProbe", "nearest-prototype probe: per finding, cosine to the mean positive minus the mean negative training embedding; macro AUROC", """
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torchmetrics.functional.classification import binary_auroc

from vlpbench.plugin_api import Column, Encoders, TaskParams, TaskResult, frozen_global_features, with_hash


class PrototypeProbe:
    {docstring}

    requires = frozenset({{"data:labels"}})
    metric_version = "1"

    class Params(TaskParams):
        train_split: str = Field("train", description="split the prototypes are averaged over")
        test_split: str = Field("test", description="split scored")

    def __init__(self, params: "PrototypeProbe.Params", context: Any = None) -> None:
        self.params = params

    def evaluate(self, encoders: Encoders, source: Any, device: torch.device) -> TaskResult:
        train, test = source.split(self.params.train_split), source.split(self.params.test_split)
        features = {{}}
        for name, split in (("train", train), ("test", test)):
            # read from the image store a batch at a time (never the whole split as floats)
            features[name] = F.normalize(frozen_global_features(encoders.image, split.images, device,
                                                                precision=encoders.precision), dim=-1)
        train_labels = torch.from_numpy(np.asarray(train.labels)).bool()
        test_labels = torch.from_numpy(np.asarray(test.labels)).long()
        per_finding = {{}}
        for k, finding in enumerate(source.label_names):
            positive, negative = train_labels[:, k], ~train_labels[:, k]
            if not positive.any() or not negative.any() or test_labels[:, k].min() == test_labels[:, k].max():
                continue  # no prototype, or nothing to rank: not scorable
            prototypes = F.normalize(torch.stack([features["train"][positive].mean(0),
                                                  features["train"][negative].mean(0)]), dim=-1)
            score = features["test"] @ prototypes[0] - features["test"] @ prototypes[1]
            per_finding[finding] = float(binary_auroc(score, test_labels[:, k]))
        scores = {{"auroc": float(np.mean(list(per_finding.values()))) if per_finding else float("nan")}}
        protocol = with_hash({{"task": "prototype_probe", "dataset": source.protocol(),
                              "train_split": self.params.train_split, "test_split": self.params.test_split,
                              "metric": "macro AUROC over scorable findings (torchmetrics binary_auroc)"}})
        return TaskResult(scores, {{"auroc": protocol}}, {{"per_finding": per_finding}},
                          {{"auroc": Column(headline=True, chance=0.5)}})
"""),
    "image_encoder": ("encoder", "SmallConvEncoder", "a small three-stage CNN (strides 2, 4, 8) with every feature the tasks read", """
from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from vlpbench.plugin_api import ImageFeatures


class SmallConvEncoder(nn.Module):
    {docstring}

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        channels: int = Field(32, ge=4, description="channels of the first stage (doubled per stage)")

    def __init__(self, params: "SmallConvEncoder.Params", context) -> None:
        super().__init__()
        self.params = params
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
})

MODULES["dataset"] = ("dataset", "CsvFolderDataset", "a labelled image folder read from your local copy: labels.csv (filename, split, one 0/1 column per finding) and images/", """
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

MODULES["text_encoder"] = ("text_encoder", "SmallTransformerTextEncoder", "a small transformer over a WordPiece vocabulary learnt from the pretraining reports: global, word and sentence embeddings", """
from __future__ import annotations

from typing import Sequence

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from vlpbench.plugin_api import (BuildContext, ConfigError, DataError, TextFeatures, TokenizedReports, pack_reports,
                                 sentence_means, train_wordpiece)


class SmallTransformerTextEncoder(nn.Module):
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
        super().__init__()
        self.params = params
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
