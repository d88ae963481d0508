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


SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def train_wordpiece(corpus: Sequence[str], vocab_size: int) -> "tokenizers.Tokenizer":  # noqa: F821
    """A lowercase BERT-style WordPiece tokenizer whose vocabulary is learnt from ``corpus``.

    The vocabulary is: the special tokens, every character seen (as a word start and as a
    ``##`` continuation, so no word is ever unknown), then whole words by descending frequency
    (ties alphabetical) until ``vocab_size``. Interpretation: the ``tokenizers`` WordPiece
    *trainer* is not deterministic across processes (hash-map ties change the vocabulary), and a
    run's identity must not depend on that, so the vocabulary is counted here and handed to a
    ``tokenizers`` WordPiece model with BERT's normaliser and pre-tokeniser.
    """
    from collections import Counter

    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

    normalizer = normalizers.BertNormalizer(lowercase=True)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    counts: Counter[str] = Counter()
    for text in corpus:
        counts.update(word for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    characters = sorted({ch for word in counts for ch in word})
    vocab = list(SPECIAL_TOKENS) + characters + [f"##{ch}" for ch in characters]
    room = max(0, vocab_size - len(vocab))
    taken = set(vocab)
    ranked = [w for w, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0])) if w not in taken]
    vocab += ranked[:room]
    tokenizer = Tokenizer(models.WordPiece({token: i for i, token in enumerate(vocab)}, unk_token="[UNK]"))
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.decoder = decoders.WordPiece()
    return tokenizer


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
