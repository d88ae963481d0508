"""``vlpbench new-plugin``: write a ready-to-install plugin distribution.

The scaffold has one working, vectorised example component per chosen kind, each with its pydantic
parameter model and a docstring template that asks for the source paper and any interpretation;
tests that pass out of the box; a README; and an experiment file that uses the components on
SynthCXR. Replace the examples with your method, keep the tests honest, then run
``vlpbench check-plugin <name>``.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

from vlpbench import __version__
from vlpbench.errors import ConfigError

KINDS = ("positive_miner", "negative_weighting", "local_head", "auxiliary", "global_loss", "task", "image_encoder",
         "text_encoder", "dataset")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

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


def _files(name: str, kinds: list[str]) -> dict[str, str]:
    package = f"vlpbench_{name}"
    registrations = []
    for kind in kinds:
        module, cls, summary, _ = MODULES[kind]
        registrations.append(f'    ("{kind}", "{name}.{module}", "{package}.{module}:{cls}", "{summary}"),')
    files = {
        "pyproject.toml": f'''[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "vlpbench-{name}"
version = "0.1.0"
description = "<one line: the method these vlpbench components implement>"
readme = "README.md"
requires-python = ">=3.10"
dependencies = ["vlpbench>={__version__}", "torch>=2.4", "pydantic>=2.6,<3"]

[project.entry-points.vlpbench]
{name} = "{package}.plugin"

[tool.setuptools.packages.find]
where = ["src"]
''',
        f"src/{package}/__init__.py": '"""vlpbench components of <method> (<paper>)."""\n\n__version__ = "0.1.0"\n',
        f"src/{package}/plugin.py": f'''"""Registers the components with vlpbench (entry point ``{name}``)."""

from __future__ import annotations

from vlpbench.plugin_api import Registrar, hookimpl

COMPONENTS = [
{chr(10).join(registrations)}
]


@hookimpl
def vlpbench_register(registrar: Registrar) -> None:
    for kind, component, target, summary in COMPONENTS:
        registrar.add(kind, component, target, summary)
''',
        f"tests/test_{name}.py": _tests(name, kinds),
        f"experiments/{name}.yaml": _experiment(name, kinds),
        "README.md": _readme(name, kinds),
    }
    for kind in kinds:
        module, cls, summary, body = MODULES[kind]
        doc = textwrap.indent(DOCSTRING.format(summary=summary[0].upper() + summary[1:] + "."), "    ").lstrip()
        files[f"src/{package}/{module}.py"] = (body.replace("{docstring}", doc).replace("{plugin}", name)
                                               .replace("{{", "{").replace("}}", "}").lstrip())
    return files


def _tests(name: str, kinds: list[str]) -> str:
    package = f"vlpbench_{name}"
    lines = ['"""Out-of-the-box tests of the scaffolded components: replace them with hand-worked values."""', "",
             "import torch", "", "from vlpbench.plugin_api import Positives",
             "from vlpbench.testing import feature_inputs, permute_inputs", ""]
    if "positive_miner" in kinds:
        lines += [f"from {package}.miner import SimilarityMiner", "", "",
                  "def test_identical_reports_are_positives() -> None:",
                  "    text = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]])",
                  "    miner = SimilarityMiner(SimilarityMiner.Params(threshold=0.9))",
                  "    positives = miner(feature_inputs(text_global=text, image_global=torch.randn(3, 2)))",
                  "    assert positives.affinity.tolist() == [[1, 1, 0], [1, 1, 0], [0, 0, 1]]", ""]
    if "negative_weighting" in kinds:
        lines += [f"from {package}.weighting import HardnessWeighting", "", "",
                  "def test_weights_grow_with_similarity() -> None:",
                  "    v = t = torch.tensor([[1.0, 0.0], [0.6, 0.8]])",
                  "    adjustment = HardnessWeighting(HardnessWeighting.Params(alpha=1.0))(",
                  "        feature_inputs(image_global=v, text_global=t), Positives(torch.eye(2)))",
                  "    assert torch.allclose(adjustment.image_to_text.weight, torch.tensor([[2.0, 1.6], [1.6, 2.0]]))", ""]
    if "local_head" in kinds:
        lines += [f"from {package}.head import MaxSimilarityHead", "", "",
                  "def test_head_is_finite_and_ignores_batch_order() -> None:",
                  "    head = MaxSimilarityHead(MaxSimilarityHead.Params())",
                  "    inputs = feature_inputs(batch_size=4, word_counts=[6, 2, 4, 3])",
                  "    out = head(inputs)['maxsim']",
                  "    again = head(permute_inputs(inputs, torch.tensor([2, 0, 3, 1])))['maxsim']",
                  "    assert torch.isfinite(out) and torch.allclose(out, again)", ""]
    if "auxiliary" in kinds:
        lines += [f"from {package}.auxiliary import CrossModalRegression", "", "",
                  "def test_regression_is_zero_when_the_predictor_hits_the_target() -> None:",
                  "    from types import SimpleNamespace",
                  "    aux = CrossModalRegression(CrossModalRegression.Params(hidden=4), SimpleNamespace(embed_dim=2))",
                  "    for layer in aux.predictor:  # make the predictor the identity on these inputs",
                  "        if isinstance(layer, torch.nn.Linear):",
                  "            torch.nn.init.zeros_(layer.bias)",
                  "    torch.nn.init.eye_(aux.predictor[0].weight[:2])",
                  "    torch.nn.init.eye_(aux.predictor[2].weight[:, :2])",
                  "    aux.predictor[0].weight.data[2:] = 0",
                  "    aux.predictor[2].weight.data[:, 2:] = 0",
                  "    aux.predictor[1] = torch.nn.Identity()",
                  "    v = torch.tensor([[1.0, 0.0], [0.0, 2.0]])",
                  "    loss = aux(feature_inputs(image_global=v, text_global=v.clone()))['regression'].detach()",
                  "    assert float(loss) < 1e-12", ""]
    if "global_loss" in kinds:
        lines += [f"from {package}.loss import FixedTemperatureInfoNCE",
                  "from vlpbench.plugin_api import DirectionAdjustment", "", "",
                  "def test_aligned_pairs_give_a_lower_loss_than_swapped_ones() -> None:",
                  "    loss = FixedTemperatureInfoNCE(FixedTemperatureInfoNCE.Params(temperature=0.1))",
                  "    v = torch.eye(3)",
                  "    none = DirectionAdjustment()",
                  "    aligned = loss(v, v, Positives(torch.eye(3)), none, none)",
                  "    swapped = loss(v, v[[1, 2, 0]], Positives(torch.eye(3)), none, none)",
                  "    assert float(aligned) < 0.01 < float(swapped)", ""]
    if "task" in kinds:
        lines += [f"from {package}.task import PrototypeProbe", "", "",
                  "def test_probe_scores_a_perfectly_separating_encoder_auroc_1() -> None:",
                  "    import numpy as np",
                  "    from types import SimpleNamespace",
                  "    from vlpbench.plugin_api import Encoders",
                  "",
                  "    class Split(SimpleNamespace):",
                  "        pass",
                  "",
                  "    labels = np.array([[1], [0], [1], [0]])",
                  "    images = np.stack([np.full((8, 8), 200 if y else 20, np.uint8) for y in labels[:, 0]])",
                  "    source = SimpleNamespace(label_names=['finding'], protocol=lambda: {'name': 'toy'},",
                  "                             split=lambda name: Split(images=images, labels=labels))",
                  "",
                  "    class Brightness(torch.nn.Module):  # feature: [mean brightness, 1 - it]",
                  "        def global_features(self, x):",
                  "            m = x.mean((1, 2, 3)).unsqueeze(1)",
                  "            return torch.cat([m, -m], 1)",
                  "",
                  "    result = PrototypeProbe(PrototypeProbe.Params()).evaluate(Encoders(Brightness(), None), source, torch.device('cpu'))",
                  "    assert result.scores['auroc'] == 1.0 and result.protocols['auroc']['hash']", ""]
    if "image_encoder" in kinds:
        lines += [f"from {package}.encoder import SmallConvEncoder", "", "",
                  "def test_encoder_gives_every_feature_the_tasks_read() -> None:",
                  "    from types import SimpleNamespace",
                  "    encoder = SmallConvEncoder(SmallConvEncoder.Params(channels=4), SimpleNamespace(embed_dim=16))",
                  "    out = encoder(torch.rand(2, 1, 32, 32))",
                  "    assert out.grid == (4, 4) and out.patch_emb.shape == (2, 16, 16) and out.global_emb.shape == (2, 16)",
                  "    assert encoder.global_features(torch.rand(2, 1, 32, 32)).shape == (2, 16)",
                  "    assert [m.shape[-1] for m in encoder.feature_maps(torch.rand(2, 1, 32, 32), min_stride=4)] == [8, 4]", ""]
    if "text_encoder" in kinds:
        lines += [f"from {package}.text_encoder import SmallTransformerTextEncoder", "", "",
                  "def test_text_encoder_gives_every_feature_the_objectives_and_tasks_read() -> None:",
                  "    from vlpbench.plugin_api import BuildContext",
                  "",
                  "    reports = [['Small left pleural effusion.', 'Heart size is normal.'], ['No acute process.']]",
                  "    context = BuildContext(embed_dim=16, corpus=[' '.join(r) for r in reports])",
                  "    params = SmallTransformerTextEncoder.Params(layers=2, hidden=16, heads=2, max_tokens=24, dropout=0.0)",
                  "    torch.manual_seed(0)",
                  "    encoder = SmallTransformerTextEncoder(params, context).eval()",
                  "    tokens = encoder.tokenize(reports)",
                  "    assert tokens.input_ids.shape == (2, 24) and tokens.sentence_index.max() == 1",
                  "    out = encoder(tokens.input_ids, tokens.attention_mask, tokens.sentence_index)",
                  "    assert out.global_emb.shape == (2, 16) and out.word_emb.shape == (2, 24, 16)",
                  "    assert torch.equal(out.word_mask, tokens.sentence_index >= 0)",
                  "    assert out.sentence_mask.tolist() == [[True, True], [True, False]]  # two sentences, then one",
                  "    first = out.word_emb[0][tokens.sentence_index[0] == 0].mean(0)  # S = mean of the sentence's words",
                  "    assert torch.allclose(out.sentence_emb[0, 0], first, atol=1e-6)",
                  "    other = BuildContext(embed_dim=16, corpus=['Another corpus entirely.'])",
                  "    again = SmallTransformerTextEncoder(params, other).eval()",
                  "    again.load_state_dict(encoder.state_dict())  # the vocabulary travels as extra state",
                  "    same = again.tokenize(reports)",
                  "    assert torch.equal(same.input_ids, tokens.input_ids)",
                  "    assert torch.allclose(again(same.input_ids, same.attention_mask, same.sentence_index).global_emb,",
                  "                          out.global_emb, atol=1e-6)",
                  "    plain = encoder.train()(tokens.input_ids, tokens.attention_mask, tokens.sentence_index).global_emb",
                  "    encoder.set_grad_checkpointing(True)",
                  "    encoder.freeze_layers(1)",
                  "    encoder.zero_grad()",
                  "    checkpointed = encoder(tokens.input_ids, tokens.attention_mask, tokens.sentence_index).global_emb",
                  "    assert torch.allclose(checkpointed, plain, atol=1e-6)  # recomputing changes nothing (no dropout)",
                  "    checkpointed.sum().backward()",
                  "    assert encoder.token_emb.weight.grad is None and encoder.blocks[0].linear1.weight.grad is None",
                  "    assert torch.isfinite(encoder.blocks[1].linear1.weight.grad).all()", ""]
    if "dataset" in kinds:
        lines += [f"from {package}.dataset import CsvFolderDataset", "", "",
                  "def test_dataset_reads_the_table_and_the_images(tmp_path) -> None:",
                  "    import numpy as np",
                  "    from PIL import Image",
                  "",
                  "    (tmp_path / 'images').mkdir()",
                  "    rows = ['filename,split,finding_a,finding_b']",
                  "    for i, split in enumerate(['train', 'train', 'val', 'test', 'test']):",
                  "        Image.fromarray(np.full((20, 20), 40 * i, np.uint8)).save(tmp_path / 'images' / f'{i}.png')",
                  "        rows.append(f'{i}.png,{split},{i % 2},{int(i > 2)}')",
                  "    (tmp_path / 'labels.csv').write_text('\\n'.join(rows) + '\\n')",
                  "    source = CsvFolderDataset(CsvFolderDataset.Params(root=str(tmp_path), image_size=16,",
                  "                                                      cache_dir=str(tmp_path / 'store'), workers=1))",
                  "    train, test = source.split('train'), source.split('test')",
                  "    assert len(train) == 2 and len(test) == 2",
                  "    assert np.asarray(test.labels).tolist() == [[1, 1], [0, 1]]",
                  "    assert np.asarray(train.images).shape == (2, 16, 16)",
                  "    assert np.asarray(test.images)[1].mean() > np.asarray(test.images)[0].mean()  # image 4 is brighter", ""]
    return "\n".join(lines)


def _experiment(name: str, kinds: list[str]) -> str:
    variant = []
    if "positive_miner" in kinds:
        variant.append(f"objective.positive_miner: {{name: {name}.miner}}")
    if "negative_weighting" in kinds:
        variant.append(f"objective.negative_weighting: [{{name: {name}.weighting}}]")
    if "local_head" in kinds:
        variant.append(f"objective.local_heads: [{{name: {name}.head}}]")
    if "auxiliary" in kinds:
        variant.append(f"objective.auxiliaries: [{{name: {name}.auxiliary, weight: 0.5}}]")
    if "global_loss" in kinds:
        variant.append(f"objective.global: {{name: {name}.loss}}")
    overrides = "\n".join(f"    {line}" for line in variant) or "    {}"
    task = f"\n  - {{name: {name}.task}}" if "task" in kinds else ""
    encoder = (f"\n  {name}-encoder: {{model.image_encoder: {{name: {name}.encoder}}}}"
               if "image_encoder" in kinds else "")
    if "text_encoder" in kinds:
        encoder += f"\n  {name}-text: {{model.text_encoder: {{name: {name}.text_encoder, layers: 1}}}}"
    data_hint = (f"# Score on your own labelled folder: add to tasks\n#   - {{name: linear_probe, dataset: {{name: {name}.dataset, "
                 "root: /path/to/copy}}\n" if "dataset" in kinds else "")
    return f"""# The {name} components against CLIP on a small SynthCXR (minutes on a CPU).
{data_hint}
name: {name}
seeds: [0]
baseline: clip
data: {{name: synthcxr, image_size: 32, pretrain_size: 256, train_size: 64, val_size: 32, test_size: 64}}
model:
  text_encoder: {{name: bert, layers: 1, hidden: 64, heads: 2}}
  embed_dim: 64
pretrain: {{epochs: 1, batch_size: 32}}
tasks:
  - {{name: linear_probe, fractions: [0.1, 1.0], max_epochs: 10}}{task}
variants:
  clip: {{}}
  {name}:
{overrides}{encoder}
"""


def _readme(name: str, kinds: list[str]) -> str:
    rows = "\n".join(f"| `{name}.{MODULES[k][0]}` | {k} | {MODULES[k][2]} |" for k in kinds)
    return f"""# vlpbench-{name}

<Method> (<paper>) as [vlpbench](https://pypi.org/project/vlpbench/) components.

| component | kind | what |
|---|---|---|
{rows}

For each component, write: what it does, its parameters with their defaults, its source (paper or
official code) and any interpretation.

```bash
pip install -e .                              # registers the `{name}` entry point
vlpbench plugins                              # lists the {name}.* components
vlpbench check-plugin {name}                  # the conformance suite (run it in your CI)
pytest tests                                  # your own tests
vlpbench run experiments/{name}.yaml          # your components against CLIP on SynthCXR
```

Results of your components reach any vlpbench leaderboard with this plugin's name and version in
each run's `provenance.json`.
"""


def _refuse_taken_name(name: str) -> None:
    """A plugin name that an installed plugin already uses (or the built-in ``vlpbench``) would lose its
    components to the registry's ownership rule (``fane`` owns ``fane.*``): refuse it at once."""
    from importlib import metadata

    from vlpbench.hookspecs import ENTRY_POINT_GROUP
    from vlpbench.plugins import get_plugins

    taken = {p.name: p.distribution or p.name for p in get_plugins().plugins}
    taken.update({ep.name: getattr(ep.dist, "name", ep.name) for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)})
    taken["vlpbench"] = "vlpbench"
    if name in taken:
        raise ConfigError(f"plugin name '{name}' is taken: the installed distribution '{taken[name]}' registers it, so "
                          f"'{name}.*' components belong to it. Choose another name (e.g. '{name}2' or your lab's "
                          "prefix).")


def new_plugin(name: str, destination: Path, kinds: list[str] | None = None) -> Path:
    """Write ``destination/vlpbench-<name>``; refuse to overwrite an existing folder."""
    if not _NAME.match(name):
        raise ConfigError(f"plugin name '{name}' must be lowercase letters, digits and underscores, starting "
                          "with a letter (it becomes the entry point and the component prefix).")
    kinds = list(dict.fromkeys(kinds or KINDS))
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ConfigError(f"new-plugin --kind {unknown[0]}: scaffolds exist for {', '.join(KINDS)}.")
    _refuse_taken_name(name)
    root = destination / f"vlpbench-{name}"
    if root.exists():
        raise ConfigError(f"'{root}' already exists; new-plugin never overwrites. Choose another name or folder.")
    for relative, text in _files(name, kinds).items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root
