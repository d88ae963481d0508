"""FaNe's per-load sentence shuffle: the vectorised token shuffle equals packing the shuffled report,
orders are a pure function of (seed, epoch, sample), and the frozen report encoder sees the same
order as the text encoder."""

from __future__ import annotations

import copy
import random
from pathlib import Path

import pytest
import torch

from vlpbench.models.tokenization import pack_reports, sentence_keys, sentence_order, shuffle_sentences


def _encoder():
    vocab: dict[str, int] = {}
    return lambda sentences: [[vocab.setdefault(w, len(vocab) + 10) for w in s.split()] for s in sentences]


@pytest.mark.parametrize("trial", range(5))
def test_the_batched_shuffle_equals_packing_the_shuffled_reports(trial: int) -> None:
    rng = random.Random(trial)
    encode = _encoder()
    reports = [[" ".join(rng.choice("abcdefgh") for _ in range(rng.randint(1, 4))) for _ in range(rng.randint(1, 6))]
               for _ in range(7)]
    packed = pack_reports(reports, encode, 1, 2, 0, 48, 8)
    keys = sentence_keys(trial, 3, torch.arange(7), 8)
    ids, sentences = shuffle_sentences(packed.input_ids, packed.sentence_index, keys)
    shuffled = [[report[j] for j in sentence_order(keys[i], len(report))] for i, report in enumerate(reports)]
    reference = pack_reports(shuffled, encode, 1, 2, 0, 48, 8)
    assert torch.equal(ids, reference.input_ids) and torch.equal(sentences, reference.sentence_index)


def test_orders_depend_on_seed_epoch_and_sample_only() -> None:
    index = torch.tensor([5, 9, 2])
    same = sentence_keys(1, 4, index, 6)
    assert torch.equal(same, sentence_keys(1, 4, torch.tensor([5, 9, 2]), 6))
    assert torch.equal(same[1], sentence_keys(1, 4, torch.tensor([9]), 6)[0])  # batch composition does not matter
    assert not torch.equal(same, sentence_keys(1, 5, index, 6)) and not torch.equal(same, sentence_keys(2, 4, index, 6))
    orders = {tuple(sentence_order(k, 6)) for k in sentence_keys(0, 0, torch.arange(400), 6)}
    assert len(orders) > 300  # well spread over the 720 permutations


def test_the_loader_shuffles_tokens_and_tells_the_frozen_encoder() -> None:
    from tests.test_training_loop import tiny
    from vlpbench.models.report_vectors import TfidfReportVectors, shuffled_reports

    built, _ = tiny(sentence_shuffle=True)
    data = built.pretrain
    first = next(data.epoch_batches(0, 0, 16, augment=False))
    again = next(data.epoch_batches(0, 0, 16, augment=False, workers=2))
    later = next(data.epoch_batches(1, 0, 16, augment=False))
    assert torch.equal(first.input_ids, again.input_ids)
    plain = copy.copy(data)
    plain.shuffle_sentences = False
    unshuffled = next(plain.epoch_batches(0, 0, 16, augment=False))
    assert torch.equal(first.index, unshuffled.index) and torch.equal(first.attention_mask, unshuffled.attention_mask)
    assert not torch.equal(first.input_ids, unshuffled.input_ids)  # same reports, other sentence orders
    assert sorted(first.input_ids[0].tolist()) == sorted(unshuffled.input_ids[0].tolist())
    assert later.extras["sentence_shuffle"][1] == 1
    sentences = built.context.corpus_sentences
    texts = shuffled_reports(sentences, first)
    row, sample = 0, int(first.index[0])
    keys = sentence_keys(0, 0, torch.tensor([sample]), first.extras["sentence_shuffle"][2])[0]
    assert texts[row] == " ".join(sentences[sample][j] for j in sentence_order(keys, len(sentences[sample])))
    tfidf = TfidfReportVectors(built.context.corpus, sentences)
    vectors = tfidf(first.index, first)
    assert torch.allclose(vectors, tfidf.vectors_of(texts)) and torch.allclose(vectors.norm(dim=1), torch.ones(16))
    assert not torch.allclose(vectors, tfidf(first.index))  # bigrams across sentences changed


def test_resume_with_the_shuffle_equals_uninterrupted(tmp_path: Path) -> None:
    from tests.test_training_loop import train
    from vlpbench.engine.callbacks import Interrupt

    _, whole = train(tmp_path, "whole", sentence_shuffle=True, checkpoint_every=2)
    with pytest.raises(Interrupt):
        train(tmp_path, "cut", sentence_shuffle=True, checkpoint_every=2, stop_after_step=8)
    _, resumed = train(tmp_path, "cut", sentence_shuffle=True, checkpoint_every=2)
    assert [r["total"] for r in resumed.history] == [r["total"] for r in whole.history]
