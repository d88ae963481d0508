"""Report tokenisation into padded word tokens with a sentence index per token.

The layout is ``[CLS] s1 tokens s2 tokens ... [SEP] [PAD]...``; ``sentence_index`` gives each
token its sentence (−1 for special tokens and padding), which is all the text encoder needs to
build sentence vectors with one batched scatter. Sentences that do not fit in ``max_tokens`` are
dropped whole (never cut mid-sentence).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch


@dataclass
class TokenizedReports:
    input_ids: torch.Tensor  # long [n, M]
    attention_mask: torch.Tensor  # long [n, M]
    sentence_index: torch.Tensor  # long [n, M]

    def __len__(self) -> int:
        return self.input_ids.shape[0]


def train_wordpiece(corpus: Sequence[str], vocab_size: int) -> "tokenizers.Tokenizer":  # noqa: F821
    """A lowercase WordPiece tokenizer trained on ``corpus`` (deterministic for a given corpus)."""
    from tokenizers.implementations import BertWordPieceTokenizer

    tokenizer = BertWordPieceTokenizer(lowercase=True)
    tokenizer.train_from_iterator(list(corpus), vocab_size=vocab_size, min_frequency=1, show_progress=False)
    return tokenizer._tokenizer  # the underlying tokenizers.Tokenizer (serialisable to JSON)


def pack_reports(
    sentences: Sequence[Sequence[str]],
    encode: Callable[[list[str]], list[list[int]]],
    cls_id: int,
    sep_id: int,
    pad_id: int,
    max_tokens: int,
    max_sentences: int,
) -> TokenizedReports:
    """Tokenise every sentence once (one batched call), then pack reports into padded rows."""
    flat = [s for report in sentences for s in report[:max_sentences]]
    encoded = encode(flat) if flat else []
    n = len(sentences)
    ids = np.full((n, max_tokens), pad_id, dtype=np.int64)
    sent = np.full((n, max_tokens), -1, dtype=np.int64)
    cursor = 0
    for row, report in enumerate(sentences):
        pieces = encoded[cursor: cursor + min(len(report), max_sentences)]
        cursor += len(pieces)
        ids[row, 0] = cls_id
        pos = 1
        for s_idx, tokens in enumerate(pieces):
            if pos + len(tokens) > max_tokens - 1:
                break
            ids[row, pos: pos + len(tokens)] = tokens
            sent[row, pos: pos + len(tokens)] = s_idx
            pos += len(tokens)
        ids[row, pos] = sep_id
    attention = (ids != pad_id).astype(np.int64)
    attention[:, 0] = 1
    return TokenizedReports(torch.from_numpy(ids), torch.from_numpy(attention), torch.from_numpy(sent))
