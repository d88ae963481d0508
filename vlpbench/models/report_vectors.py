"""Frozen report vectors for semantic positive mining (FaNe, SISTA and any third-party miner).

Miners that compare reports need a *frozen* report encoder that is meaningful from the first
step: a randomly initialised one would mine noise. Two sources, both offline:

- ``tfidf`` (default): TF-IDF over word unigrams and bigrams of the pretraining corpus (bigrams
  keep "no effusion" apart from "effusion"), sublinear term frequency, smoothed IDF, L2-normalised
  rows. Needs no download.
- a local Hugging Face model directory (e.g. Bio_ClinicalBERT, as in FaNe): every report of the
  corpus is encoded once, without gradients; the vector is the pooler output when the model has a
  pooler, the [CLS] token otherwise, L2-normalised.

Vectors are looked up by the batch's sample index into the pretraining split, so a miner's cost
per step is one gather and one ``B×B`` matrix product. Under FaNe's per-load sentence shuffle
(``pretrain.sentence_shuffle``) the batch's reports are re-encoded in the order the loader drew
(the sentences joined in that order, as the official code feeds its frozen encoder): TF-IDF with the
corpus's vocabulary and IDF, or one no-grad forward of the frozen model.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vlpbench.core.errors import DataError
from vlpbench.core.features import Batch
from vlpbench.models.tokenization import sentence_keys, sentence_order

_WORD = re.compile(r"[a-z]+")


def report_terms(text: str) -> list[str]:
    """Lowercase word unigrams and bigrams of one report."""
    words = _WORD.findall(text.lower())
    return words + [f"{a} {b}" for a, b in zip(words, words[1:])]


def shuffled_reports(sentences: Sequence[Sequence[str]], batch: Batch) -> list[str] | None:
    """The batch's reports with their sentences in the order the loader drew, or None without the shuffle."""
    shuffle = batch.extras.get("sentence_shuffle")
    if shuffle is None or not sentences:
        return None
    seed, epoch, slots = shuffle
    ids = batch.extras.get("sample_ids")
    if ids is None or len(ids) != len(batch.index):
        ids = batch.index.tolist()  # gathered rows of other processes: one read of their indices
    keys = sentence_keys(seed, epoch, torch.tensor(ids), slots)
    return [" ".join(sentences[i][j] for j in sentence_order(keys[row], min(len(sentences[i]), slots)))
            for row, i in enumerate(ids)]


class TfidfReportVectors(nn.Module):
    """TF-IDF vectors of a fixed corpus, stored sparsely (padded term ids and weights per report)."""

    def __init__(self, corpus: Sequence[str], sentences: Sequence[Sequence[str]] = ()) -> None:
        super().__init__()
        self.sentences = sentences
        if not corpus:
            raise DataError("TF-IDF report vectors need the pretraining reports, and the dataset gave none.")
        counts = [Counter(report_terms(text)) for text in corpus]
        document_frequency: Counter[str] = Counter(term for c in counts for term in c)
        vocabulary = {term: i for i, term in enumerate(sorted(document_frequency))}
        n = len(corpus)
        idf = {t: math.log((1 + n) / (1 + df)) + 1.0 for t, df in document_frequency.items()}
        width = max(1, max(len(c) for c in counts))
        ids = torch.zeros(n, width, dtype=torch.long)
        weights = torch.zeros(n, width)
        for row, c in enumerate(counts):  # once per corpus, at build time
            terms = sorted(c)
            values = torch.tensor([(1.0 + math.log(c[t])) * idf[t] for t in terms])
            ids[row, : len(terms)] = torch.tensor([vocabulary[t] for t in terms])
            weights[row, : len(terms)] = values / values.norm().clamp_min(1e-12)
        self.size = len(vocabulary)
        self.vocabulary, self.idf = vocabulary, idf
        self.register_buffer("ids", ids, persistent=False)
        self.register_buffer("weights", weights, persistent=False)

    def vectors_of(self, texts: Sequence[str]) -> Tensor:
        """TF-IDF vectors of new texts with the corpus's vocabulary and IDF (unseen terms dropped)."""
        dense = torch.zeros(len(texts), self.size, dtype=self.weights.dtype)
        for row, text in enumerate(texts):
            counts = Counter(t for t in report_terms(text) if t in self.vocabulary)
            for term, count in counts.items():
                dense[row, self.vocabulary[term]] = (1.0 + math.log(count)) * self.idf[term]
        return F.normalize(dense, dim=-1).to(self.weights.device)

    def forward(self, index: Tensor, batch: Batch | None = None) -> Tensor:
        """Dense L2-normalised vectors [B, V] of the reports at ``index`` (re-encoded in the batch's
        sentence order under the shuffle)."""
        texts = shuffled_reports(self.sentences, batch) if batch is not None else None
        if texts is not None:
            return self.vectors_of(texts)
        dense = torch.zeros(len(index), self.size, device=self.weights.device, dtype=self.weights.dtype)
        return dense.scatter_add_(1, self.ids[index], self.weights[index])


class PretrainedReportVectors(nn.Module):
    """Report vectors from a local Hugging Face encoder, computed once for the whole corpus."""

    def __init__(self, corpus: Sequence[str], path: str, batch_size: int = 64, max_length: int = 256,
                 sentences: Sequence[Sequence[str]] = ()) -> None:
        super().__init__()
        self.sentences, self.max_length = sentences, max_length
        from transformers import AutoModel, AutoTokenizer

        folder = Path(path).expanduser()
        if not (folder / "config.json").is_file():
            raise DataError(
                f"report_encoder = '{path}' is neither 'tfidf' nor a local Hugging Face model directory "
                "(no config.json there). Use 'tfidf' or point it at a local download such as Bio_ClinicalBERT."
            )
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        model = AutoModel.from_pretrained(str(folder), local_files_only=True).eval()
        self.tokenizer = tokenizer
        self.frozen = [model]  # a list: not a submodule (never trained, never in the state dict)
        vectors = [self.encode(list(corpus[start:start + batch_size])) for start in range(0, len(corpus), batch_size)]
        self.register_buffer("vectors", torch.cat(vectors), persistent=False)

    @torch.no_grad()
    def encode(self, texts: list[str]) -> Tensor:
        """Unit vectors of ``texts``: the pooler output, or [CLS] without a pooler."""
        model = self.frozen[0]
        device = next(model.parameters()).device
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        out = model(**{k: v.to(device) for k, v in batch.items()})
        pooled = getattr(out, "pooler_output", None)
        return F.normalize(pooled if pooled is not None else out.last_hidden_state[:, 0], dim=-1)

    def forward(self, index: Tensor, batch: Batch | None = None) -> Tensor:
        texts = shuffled_reports(self.sentences, batch) if batch is not None else None
        if texts is not None:
            self.frozen[0].to(self.vectors.device)
            return self.encode(texts)
        return self.vectors[index]


def build_report_vectors(source: str, corpus: Sequence[str], sentences: Sequence[Sequence[str]] = ()) -> nn.Module:
    """``"tfidf"`` or a local model directory → a module mapping sample indices (and, under the
    sentence shuffle, the batch) to unit vectors. ``sentences``: the corpus's reports as sentence
    lists, which the shuffle reorders."""
    if source == "tfidf":
        return TfidfReportVectors(corpus, sentences)
    return PretrainedReportVectors(corpus, source, sentences=sentences)


def report_similarity(vectors: Tensor) -> Tensor:
    """Cosine similarity matrix [B, B] of unit report vectors."""
    return vectors @ vectors.t()
