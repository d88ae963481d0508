"""Report tokenisation into padded word tokens with a sentence index per token.

The layout is ``[CLS] s1 tokens s2 tokens ... [SEP] [PAD]...``; ``sentence_index`` gives each
token its sentence (−1 for special tokens and padding), which is all the text encoder needs to
build sentence vectors with one batched scatter. Sentences that do not fit in ``max_tokens`` are
dropped whole (never cut mid-sentence).
"""

from __future__ import annotations

from collections import Counter
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
    chunk: int = 1024,
) -> TokenizedReports:
    """Tokenise every sentence once (batched calls of ``chunk`` reports, so that the tokenizer's
    per-sentence objects never exist for the whole corpus at once), then pack reports into padded rows."""
    n = len(sentences)
    ids = np.full((n, max_tokens), pad_id, dtype=np.int64)
    sent = np.full((n, max_tokens), -1, dtype=np.int64)
    for start in range(0, n, chunk):
        part = sentences[start:start + chunk]
        flat = [s for report in part for s in report[:max_sentences]]
        encoded = encode(flat) if flat else []
        cursor = 0
        for row, report in enumerate(part, start=start):
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


def shuffle_sentences(input_ids: torch.Tensor, sentence_index: torch.Tensor,
                      keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each report's sentences in a new order, batched: the order of row ``b`` sorts its sentences by
    ``keys[b, s]`` (FaNe's per-load sentence shuffle). Rows keep the ``[CLS] s… [SEP] [PAD]…`` layout
    and their length; ``sentence_index`` numbers the sentences in their new order, as if the shuffled
    report had been packed (:func:`pack_reports`)."""
    rows, width = input_ids.shape
    slots = keys.shape[1]
    valid = sentence_index >= 0
    index = sentence_index.clamp_min(0)
    counts = torch.zeros(rows, slots, dtype=torch.long).scatter_add_(1, index, valid.long())  # tokens per sentence
    present = counts > 0
    order = torch.where(present, keys, torch.full_like(keys, float("inf"))).argsort(dim=1, stable=True)  # new slot → old
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(slots).expand(rows, slots))  # old → new slot
    new_counts = counts.gather(1, order)
    new_start = 1 + new_counts.cumsum(1) - new_counts  # position of each new slot's first token (after [CLS])
    old_start = 1 + counts.cumsum(1) - counts
    position = torch.arange(width).expand(rows, width)
    within = position - old_start.gather(1, index)
    new_slot = rank.gather(1, index)
    target = torch.where(valid, new_start.gather(1, new_slot) + within, position)  # specials and padding stay put
    ids = torch.empty_like(input_ids).scatter_(1, target, input_ids)
    sentences = torch.empty_like(sentence_index).scatter_(1, target, torch.where(valid, new_slot, sentence_index))
    return ids, sentences


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


_GOLDEN, _MIX1, _MIX2 = _signed(0x9E3779B97F4A7C15), _signed(0xBF58476D1CE4E5B9), _signed(0x94D049BB133111EB)


def _splitmix64(x: torch.Tensor) -> torch.Tensor:
    """SplitMix64's finaliser on int64 tensors (wrapping arithmetic, logical shifts)."""
    z = x + _GOLDEN
    z = (z ^ ((z >> 30) & ((1 << 34) - 1))) * _MIX1
    z = (z ^ ((z >> 27) & ((1 << 37) - 1))) * _MIX2
    return z ^ ((z >> 31) & ((1 << 33) - 1))


def sentence_keys(seed: int, epoch: int, index: torch.Tensor, slots: int) -> torch.Tensor:
    """Keys [len(index), slots] in [0, 1) whose order is each sample's sentence order in ``epoch``.

    A counter-based hash of (seed, epoch, sample, slot), so any process can compute the order of any
    sample without a table or a generator's state: the loader shuffles the tokens with it, and a
    frozen report encoder re-encodes the same order, also for rows gathered from other processes.
    """
    base = _splitmix64(torch.tensor([seed * 1_000_003 + epoch], dtype=torch.long))
    sample = _splitmix64(base + index.long().cpu().unsqueeze(1) * 0x100000001)
    z = _splitmix64(sample + torch.arange(slots, dtype=torch.long).unsqueeze(0))
    return ((z >> 11) & ((1 << 53) - 1)).double() / float(1 << 53)


def sentence_order(keys: torch.Tensor, count: int) -> list[int]:
    """The order of a report's first ``count`` sentences given its keys."""
    return keys[:count].argsort(stable=True).tolist()
