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
per step is one gather and one ``B×B`` matrix product.
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

from vlpbench.errors import DataError

_WORD = re.compile(r"[a-z]+")


def report_terms(text: str) -> list[str]:
    """Lowercase word unigrams and bigrams of one report."""
    words = _WORD.findall(text.lower())
    return words + [f"{a} {b}" for a, b in zip(words, words[1:])]


class TfidfReportVectors(nn.Module):
    """TF-IDF vectors of a fixed corpus, stored sparsely (padded term ids and weights per report)."""

    def __init__(self, corpus: Sequence[str]) -> None:
        super().__init__()
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
        self.register_buffer("ids", ids, persistent=False)
        self.register_buffer("weights", weights, persistent=False)

    def forward(self, index: Tensor) -> Tensor:
        """Dense L2-normalised vectors [B, V] of the reports at ``index``."""
        dense = torch.zeros(len(index), self.size, device=self.weights.device, dtype=self.weights.dtype)
        return dense.scatter_add_(1, self.ids[index], self.weights[index])


class PretrainedReportVectors(nn.Module):
    """Report vectors from a local Hugging Face encoder, computed once for the whole corpus."""

    def __init__(self, corpus: Sequence[str], path: str, batch_size: int = 64, max_length: int = 256) -> None:
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        folder = Path(path).expanduser()
        if not (folder / "config.json").is_file():
            raise DataError(
                f"report_encoder = '{path}' is neither 'tfidf' nor a local Hugging Face model directory "
                "(no config.json there). Use 'tfidf' or point it at a local download such as Bio_ClinicalBERT."
            )
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        model = AutoModel.from_pretrained(str(folder), local_files_only=True).eval()
        vectors = []
        with torch.no_grad():
            for start in range(0, len(corpus), batch_size):
                batch = tokenizer(list(corpus[start:start + batch_size]), padding=True, truncation=True,
                                  max_length=max_length, return_tensors="pt")
                out = model(**batch)
                pooled = getattr(out, "pooler_output", None)
                vectors.append(pooled if pooled is not None else out.last_hidden_state[:, 0])
        self.register_buffer("vectors", F.normalize(torch.cat(vectors), dim=-1), persistent=False)

    def forward(self, index: Tensor) -> Tensor:
        return self.vectors[index]


def build_report_vectors(source: str, corpus: Sequence[str]) -> nn.Module:
    """``"tfidf"`` or a local model directory → a module mapping sample indices to unit vectors."""
    if source == "tfidf":
        return TfidfReportVectors(corpus)
    return PretrainedReportVectors(corpus, source)


def report_similarity(vectors: Tensor) -> Tensor:
    """Cosine similarity matrix [B, B] of unit report vectors."""
    return vectors @ vectors.t()
