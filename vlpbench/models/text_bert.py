"""A transformers BERT-style report encoder giving global, word and sentence embeddings.

Two ways to get one, both offline:
- ``pretrained: /path/to/hf_dir`` (e.g. a local Bio_ClinicalBERT download): its tokenizer and
  weights are loaded with ``local_files_only=True``; ``pretrained: {path: DIR, sha256: HASH}``
  also pins the weights file (the SHA-256 a model hub lists for ``model.safetensors`` /
  ``pytorch_model.bin``);
- otherwise a small BERT is built from a config (``layers``, ``hidden``, ``heads``) and a
  WordPiece tokenizer is trained on the pretraining corpus with ``tokenizers``. The trained
  vocabulary travels inside the module's state dict, so checkpoints are self-contained.

The global vector t (``pooling``): ``cls`` (default, CLIP-style: [CLS] through its own projection),
``mean`` (mean token through that projection), or ``sentence_attention``: the attention pool over
the report's sentence vectors that FaNe and CM-CGNS use (:mod:`vlpbench.models.sentence_pool`);
it shares the word-token projection with the local path, as the official codes do, and has no
projection of its own. Sentence vectors (``sentence_vectors``): ``mean`` of the projected word
tokens of each sentence (default; FaNe), or ``unit_word_mean``, the mean of the L2-normalised
word tokens, not re-normalised (CM-CGNS, ``cgns_module.py:375-377``). The new settings are left
out of the resolved config at their defaults, so runs made before they existed keep their identity.

Options of the field's baselines (issue 20), off by default and left out of the identity at their
defaults: ``hidden_layers: k`` sums the hidden states of the last k layers (GLoRIA: 4,
``gloria/models/text_model.py:97-114``) and uses the sum everywhere the last hidden state was used;
``word_pieces: sum|mean`` aggregates word pieces into words before the word projection
(:mod:`vlpbench.models.word_pieces`; GLoRIA and MGCA: sum), so ``word_emb`` holds [CLS], the words,
[SEP] and zero-feature slots (the sentence vectors and the pooled global vector still come from the
pieces). On request of a component (``feature_requests = {"text:cls_attention"}``, see
:mod:`vlpbench.models.requests`) it also publishes the last layer's [CLS] attention (MGCA's word
importance), recomputed for the [CLS] query alone from the last layer's input, whatever attention
kernel (SDPA, eager) the transformer runs: nothing is computed when no component asks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from vlpbench.config.envpath import expand_path
from vlpbench.core.context import BuildContext
from vlpbench.core.module_component import ModuleComponent
from vlpbench.core.errors import ConfigError, DataError
from vlpbench.core.features import TextFeatures
from vlpbench.engine.files import file_sha256
from vlpbench.models.sentence_pool import SentenceAttentionPool
from vlpbench.models.tokenization import TokenizedReports, pack_reports, train_wordpiece
from vlpbench.models.word_pieces import aggregate, continuation_table, piece_words, slot_sentences


#: Weights files of a Hugging Face model directory, in the order they are looked for.
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


class LocalModel(BaseModel):
    """A local Hugging Face model directory with an optional checksum of its weights file."""

    model_config = ConfigDict(extra="forbid")
    path: str = Field(description="the directory (~ and $VARS are expanded)")
    sha256: str | None = Field(None, description="expected SHA-256 of model.safetensors or pytorch_model.bin")


class BertTextEncoder(ModuleComponent["BertTextEncoder.Params"]):
    """Report → t [B,D], W [B,M,D] (+mask), S [B,T,D] (+mask); S is the mean of each sentence's words."""

    provides = frozenset({"global", "words", "sentences"})
    #: outputs a component may request (``feature_requests``), computed only then
    optional_features = frozenset({"cls_attention"})

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        pretrained: str | LocalModel | None = Field(
            None, description="local Hugging Face model directory (no hub downloads): a path, or "
                              "{path: DIR, sha256: HASH} to pin the weights file")
        layers: int = Field(2, ge=1)
        hidden: int = Field(128, ge=16)
        heads: int = Field(2, ge=1)
        intermediate: int | None = Field(None, description="feed-forward size (default 2 × hidden)")
        vocab_size: int = Field(2000, ge=100)
        max_tokens: int = Field(128, ge=8)
        max_sentences: int = Field(16, ge=1)
        pooling: Literal["cls", "mean", "sentence_attention"] = Field(
            "cls", description="global vector: [CLS] or mean token through a projection, or the attention pool "
                               "over the sentence vectors (FaNe, CM-CGNS)")
        pool_heads: int = Field(8, ge=1, exclude_if=lambda value: value == 8,
                                description="heads of the sentence attention pool (official: 8)")
        sentence_vectors: Literal["mean", "unit_word_mean"] = Field(
            "mean", exclude_if=lambda value: value == "mean",
            description="sentence vector: mean of the projected word tokens, or of the L2-normalised ones (CM-CGNS)")
        hidden_layers: int = Field(1, ge=1, exclude_if=lambda value: value == 1,
                                   description="sum of the hidden states of the last k layers (GLoRIA: 4); 1 = the last")
        word_pieces: Literal["keep", "sum", "mean"] = Field(
            "keep", exclude_if=lambda value: value == "keep",
            description="word tokens: the word pieces (keep), or each word's pieces aggregated (GLoRIA, MGCA: sum)")
        dropout: float = Field(0.1, ge=0, lt=1)
        freeze: bool = Field(False, description="freeze the transformer (projections still learn)")

    def __init__(self, params: "BertTextEncoder.Params", context: BuildContext) -> None:
        super().__init__(params, context)
        from transformers import BertConfig, BertModel

        if params.pretrained:
            local = params.pretrained if isinstance(params.pretrained, LocalModel) else LocalModel(path=params.pretrained)

            self._load_pretrained(Path(expand_path(local.path, "text_encoder.pretrained")), local.sha256, local.path)
        else:
            if not context.corpus:
                raise DataError("the bert text encoder needs a corpus to train its tokenizer, and the dataset gave none.")
            self._tokenizer = train_wordpiece(context.corpus, params.vocab_size)
            config = BertConfig(
                vocab_size=self._tokenizer.get_vocab_size(),
                hidden_size=params.hidden,
                num_hidden_layers=params.layers,
                num_attention_heads=params.heads,
                intermediate_size=params.intermediate or 2 * params.hidden,
                max_position_embeddings=params.max_tokens,
                hidden_dropout_prob=params.dropout,
                attention_probs_dropout_prob=params.dropout,
            )
            self.bert = BertModel(config, add_pooling_layer=False)
        if params.freeze:
            self.bert.requires_grad_(False)
        depth = self.bert.config.num_hidden_layers
        if params.hidden_layers > depth:
            raise ConfigError(f"text_encoder.hidden_layers = {params.hidden_layers}, but the text encoder has {depth} "
                              "layers; give at most that many (GLoRIA's 4 needs a BERT of 4 layers or more).")
        self.cls_attention = False  # switched on by request_features
        self._continuation: Tensor | None = None
        width = self.bert.config.hidden_size
        if params.pooling == "sentence_attention":
            self.sentence_pool = SentenceAttentionPool(context.embed_dim, params.pool_heads)
        else:
            self.global_proj = nn.Linear(width, context.embed_dim)
        self.local_proj = nn.Linear(width, context.embed_dim)

    # -- tokenizer -------------------------------------------------------------------------------
    def _load_pretrained(self, path: Path, sha256: str | None = None, shown: str | None = None) -> None:
        """Load a local Hugging Face model folder; messages quote ``shown`` (the config's text), not ``path``."""
        shown = str(path) if shown is None else shown
        from transformers import AutoModel, AutoTokenizer

        if not (path / "config.json").is_file():
            raise DataError(
                f"text_encoder.pretrained = '{shown}' is not a Hugging Face model directory (no config.json "
                "there). Point it at a local download (e.g. of Bio_ClinicalBERT); nothing is fetched from a hub."
            )
        weights = [path / name for name in WEIGHT_FILES if (path / name).is_file()]
        if not weights:
            raise DataError(f"text_encoder.pretrained = '{shown}' has a config.json but no weights file "
                            f"({' or '.join(WEIGHT_FILES)}). Copy the model's weights into that folder.")
        if sha256:
            actual = file_sha256(weights[0])
            if actual != sha256.lower():
                raise DataError(f"text_encoder.pretrained: '{shown}/{weights[0].name}' has SHA-256 {actual}, not the expected "
                                f"pretrained_sha256 = {sha256}; the file is not the expected one.")
        try:
            self._hf_tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise DataError(f"text_encoder.pretrained = '{shown}': its tokenizer cannot be loaded ({str(exc).strip()[:200]}). "
                            "The folder needs the tokenizer files of the download (vocab.txt or tokenizer.json, "
                            "tokenizer_config.json); nothing is fetched from a hub.") from None
        self.bert = AutoModel.from_pretrained(str(path), local_files_only=True, add_pooling_layer=False)
        self._tokenizer = None

    def _special_ids(self) -> tuple[int, int, int]:
        if self._tokenizer is None:
            t = self._hf_tokenizer
            return t.cls_token_id, t.sep_token_id, t.pad_token_id
        return (self._tokenizer.token_to_id("[CLS]"), self._tokenizer.token_to_id("[SEP]"),
                self._tokenizer.token_to_id("[PAD]"))

    def _encode(self, sentences: list[str]) -> list[list[int]]:
        if self._tokenizer is None:
            return self._hf_tokenizer(sentences, add_special_tokens=False)["input_ids"]
        return [e.ids for e in self._tokenizer.encode_batch(sentences, add_special_tokens=False)]

    def tokenize(self, reports: Sequence[Sequence[str]]) -> TokenizedReports:
        """Reports as lists of sentences → padded token ids with a sentence index per token."""
        cls_id, sep_id, pad_id = self._special_ids()
        max_tokens = min(self.params.max_tokens, self.bert.config.max_position_embeddings)
        return pack_reports(reports, self._encode, cls_id, sep_id, pad_id, max_tokens, self.params.max_sentences)

    def freeze_layers(self, layers: int) -> None:
        """Freeze the embeddings and the first ``layers`` transformer layers (``pretrain.freeze_text_layers``)."""
        blocks = self.bert.encoder.layer
        if layers > len(blocks):
            raise ConfigError(f"pretrain.freeze_text_layers = {layers}, but the text encoder has {len(blocks)} layers.")
        self.bert.embeddings.requires_grad_(False)
        for block in blocks[:layers]:
            block.requires_grad_(False)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each transformer layer's activations in the backward pass (``pretrain.grad_checkpointing``)."""
        kwargs = {"use_reentrant": False}
        if hasattr(self.bert, "activation_checkpointing_enable"):  # transformers ≥ 5
            if enable:
                self.bert.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
            else:
                self.bert.activation_checkpointing_disable()
        elif enable:
            self.bert.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
        else:
            self.bert.gradient_checkpointing_disable()

    def get_extra_state(self) -> str:
        return "" if self._tokenizer is None else self._tokenizer.to_str()

    def set_extra_state(self, state: str) -> None:
        if state:
            from tokenizers import Tokenizer

            self._tokenizer = Tokenizer.from_str(state)
            self._continuation = None

    # -- optional outputs ------------------------------------------------------------------------
    def request_features(self, names: set[str]) -> set[str]:
        """Switch on the requested optional outputs this encoder has; returns those granted."""
        if "cls_attention" in names:
            attention = getattr(getattr(self.bert, "encoder", None), "layer", [None])[-1]
            attention = getattr(getattr(attention, "attention", None), "self", None)
            if not all(hasattr(attention, a) for a in ("query", "key", "num_attention_heads", "attention_head_size")):
                raise ConfigError("a component requests text:cls_attention, but this text encoder's transformer has no "
                                  "BERT-style self-attention in its last layer to read it from; use a BERT model.")
            self.cls_attention = True
        return names & set(self.optional_features)

    def last_layer_cls_attention(self, layer_input: Tensor, attention_mask: Tensor) -> Tensor:
        """[B, M]: softmax(q_[CLS]·k/√d) of the last layer, padding masked, mean over heads, no grad
        (the probabilities before attention dropout, as MGCA's ``med.py`` returns them)."""
        attention = self.bert.encoder.layer[-1].attention.self
        heads, size = attention.num_attention_heads, attention.attention_head_size
        with torch.no_grad():
            query = attention.query(layer_input[:, :1]).view(layer_input.shape[0], 1, heads, size).transpose(1, 2)
            key = attention.key(layer_input).view(layer_input.shape[0], -1, heads, size).transpose(1, 2)
            scores = (query @ key.transpose(-1, -2)).squeeze(2) / size ** 0.5  # [B, heads, M]
            scores = scores.masked_fill((attention_mask == 0)[:, None, :], float("-inf"))
            return torch.softmax(scores.float(), dim=-1).mean(1).to(layer_input.dtype)

    def continuation(self) -> Tensor:
        """The vocabulary's continuation-piece table (``##…``), built once per tokenizer."""
        if self._continuation is None:
            if self._tokenizer is None:
                tokens = self._hf_tokenizer.convert_ids_to_tokens(list(range(len(self._hf_tokenizer))))
            else:
                vocab = self._tokenizer.get_vocab()
                tokens = [""] * (max(vocab.values()) + 1)
                for token, index in vocab.items():
                    tokens[index] = token
            self._continuation = continuation_table(tokens)
        return self._continuation

    # -- forward ---------------------------------------------------------------------------------
    def forward(self, input_ids: Tensor, attention_mask: Tensor, sentence_index: Tensor,
                num_sentences: int | None = None) -> TextFeatures:
        """``num_sentences`` (the batch's sentence count, which the loader knows on the CPU) spares
        a device-to-host read of ``sentence_index.max()`` in every step."""
        k = self.params.hidden_layers
        if k == 1 and not self.cls_attention:  # the default: exactly the computation of earlier versions
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # [B,M,H]
            return self.features(hidden, attention_mask, sentence_index, num_sentences, input_ids=input_ids)
        states = self.bert(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True).hidden_states
        hidden = states[-1] if k == 1 else torch.stack(states[-k:]).sum(0)
        attention = self.last_layer_cls_attention(states[-2], attention_mask) if self.cls_attention else None
        return self.features(hidden, attention_mask, sentence_index, num_sentences, input_ids=input_ids,
                             cls_attention=attention)

    def features(self, hidden: Tensor, attention_mask: Tensor, sentence_index: Tensor,
                 num_sentences: int | None = None, input_ids: Tensor | None = None,
                 cls_attention: Tensor | None = None) -> TextFeatures:
        """The transformer's last hidden states [B,M,H] → global, word and sentence embeddings
        (``input_ids`` is needed only to aggregate word pieces)."""
        words = self.local_proj(hidden)  # [B,M,D]
        pieces = F.normalize(words, dim=-1) if self.params.sentence_vectors == "unit_word_mean" else words
        sentences, sentence_mask = sentence_means(pieces, sentence_index, num_sentences)
        word_mask, word_sentence, slots = sentence_index >= 0, sentence_index, None
        if self.params.word_pieces != "keep":
            if input_ids is None:
                raise ValueError("word_pieces aggregation needs the input ids")

            slots = piece_words(input_ids, attention_mask, self.continuation())
            words = self.local_proj(aggregate(hidden, slots, self.params.word_pieces))
            word_sentence = slot_sentences(sentence_index, slots)
            word_mask = word_sentence >= 0
        if self.params.pooling == "sentence_attention":
            global_emb = self.sentence_pool(sentences, sentence_mask)
        elif self.params.pooling == "cls":
            global_emb = self.global_proj(hidden[:, 0])
        else:
            weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
            global_emb = self.global_proj((hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0))
        return TextFeatures(
            global_emb=global_emb,
            word_emb=words,
            word_mask=word_mask,
            sentence_emb=sentences,
            sentence_mask=sentence_mask,
            word_sentence=word_sentence,
            cls_attention=cls_attention,
            piece_word=slots,
        )


def sentence_means(words: Tensor, sentence_index: Tensor, num: int | None = None) -> tuple[Tensor, Tensor]:
    """Mean of the word vectors of each sentence, batched: [B,M,D] → S [B,T,D] and mask [B,T].

    ``num`` is T (``sentence_index.max() + 1``); computed here when not given (a host sync on a GPU).
    """
    valid = sentence_index >= 0
    if num is None:
        num = int(sentence_index.max().clamp_min(0)) + 1
    onehot = torch.nn.functional.one_hot(sentence_index.clamp_min(0), num) * valid.unsqueeze(-1)
    onehot = onehot.to(words.dtype)  # [B,M,T]
    counts = onehot.sum(1)  # [B,T]
    sums = torch.einsum("bmt,bmd->btd", onehot, words)
    return sums / counts.clamp_min(1.0).unsqueeze(-1), counts > 0
