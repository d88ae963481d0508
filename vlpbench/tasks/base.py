"""What every downstream task shares: parameters, results with protocols, frozen features."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from vlpbench.config.identity import protocol_hash  # noqa: F401  (tasks and plugins import it from here)
from vlpbench.config.schema import ComponentSpec
from vlpbench.core.capabilities import SharesDensePass, offers
from vlpbench.core.errors import ConfigError
from vlpbench.tasks.features import FeatureCache, dense_maps, global_batches

T = TypeVar("T")


@dataclass
class Encoders:
    """What a task scores: the frozen image encoder and, when there is one, the text encoder."""

    image: torch.nn.Module
    text: torch.nn.Module | None = None
    #: the run's autocast precision: frozen features are computed under bf16 autocast when it is bf16
    precision: str = "fp32"
    #: where dense feature maps go (memory within a budget, disk, recomputation): :mod:`vlpbench.tasks.features`
    cache: "FeatureCache" = field(default_factory=lambda: _feature_cache())
    #: the finest stride of the dense tasks that read the same images (set by the evaluation): global
    #: features of those images then come from the pass that computes their feature maps (:meth:`global_features`)
    dense_min_stride: int | None = None
    #: the image arrays those dense tasks read (set by the evaluation); None: any array. Another task's
    #: own split (e.g. a linear probe's larger test split) then gets a pass for its global features alone.
    dense_images: tuple[Any, ...] | None = None
    #: Frozen features already computed in this evaluation, shared between tasks (see :meth:`memo`).
    _memo: dict[tuple[Any, ...], tuple[Any, Any]] = field(default_factory=dict, repr=False)

    def memo(self, kind: str, images: Any, options: tuple[Any, ...], compute: Callable[[], T]) -> T:
        """``compute()`` once per (kind, image array, options) and reuse it in later tasks.

        The encoders are frozen while tasks run, so features of the same images are the same in
        every task: the linear probe, zero-shot and retrieval share global features and embeddings,
        segmentation and detection the feature maps, instead of each running the encoder again.
        """
        key = (kind, id(images), options)
        hit = self._memo.get(key)
        if hit is not None and hit[0] is images:  # the array itself is kept, so its id cannot be reused
            return hit[1]
        value = compute()
        self._memo[key] = (images, value)
        return value

    def memoised(self, kind: str, images: Any, options: tuple[Any, ...]) -> bool:
        """Whether :meth:`memo` already holds (kind, images, options)."""
        hit = self._memo.get((kind, id(images), options))
        return hit is not None and hit[0] is images

    def global_features(self, images: Any, device: torch.device) -> torch.Tensor:
        """Frozen pre-projection global features [n,D] of ``images``, once per evaluation.

        When dense tasks will read the same images (``dense_min_stride`` set, and ``images`` one of
        :attr:`dense_images` when that is set) and the encoder offers
        :class:`~vlpbench.core.capabilities.SharesDensePass`, one encoder pass gives both: the maps
        are kept for those tasks (placed by :attr:`cache`) and the global features returned,
        instead of a second pass."""
        read_by_dense = self.dense_images is None or any(images is array for array in self.dense_images)
        stride = self.dense_min_stride if read_by_dense else None

        def compute() -> torch.Tensor:
            if stride is None or not offers(self.image, SharesDensePass) or self.memoised("feature_maps", images,
                                                                                          (str(device), stride)):
                return frozen_global_features(self.image, images, device, precision=self.precision)
            pooled: list[torch.Tensor] = []
            maps = dense_maps(self.image, images, device, stride, cache=self.cache, precision=self.precision,
                              what=f"split ({len(images)} images)", pooled=pooled)
            self.memo("feature_maps", images, (str(device), stride), lambda: maps)
            if sum(len(p) for p in pooled) != len(images):  # recomputed maps: the globals on their own
                return frozen_global_features(self.image, images, device, precision=self.precision)
            return torch.cat(pooled) if pooled else torch.empty(0)

        return self.memo("global_features", images, (str(device),), compute)

    def test_embeddings(self, images: Any, cases: int, device: torch.device) -> torch.Tensor:
        """Projected, L2-normalised embeddings [cases, D] of the first ``cases`` images of a split, once
        per evaluation (zero-shot and retrieval score the same test images)."""
        return self.memo("image_embeddings", images, (str(device), cases),
                         lambda: image_embeddings(self.image, images[:cases], device, precision=self.precision))

    def close(self) -> None:
        """Forget the shared features and remove the disk cache of dense maps (the evaluation is over)."""
        self._memo.clear()
        self.cache.close()

    def require_text(self, task: str) -> torch.nn.Module:
        if self.text is None:
            raise ConfigError(f"task '{task}' compares images with text and needs a text encoder; this checkpoint "
                              "has only an image encoder. Drop the task or evaluate a full vlpbench checkpoint.")
        return self.text


class TaskParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dataset: ComponentSpec | None = Field(None, description="data for this task (default: the experiment's data)")


@dataclass(frozen=True)
class Column:
    """What a task declares about one score column; the leaderboard reads it (it never guesses
    from column names).

    ``headline``: shown in the headline tables (every column is in the full ones);
    ``higher_is_better``: which way "best" and ranks go; ``chance``: the score of an uninformed
    predictor under this protocol (marked on the charts; None where there is none).
    """

    headline: bool = False
    higher_is_better: bool = True
    chance: float | None = None
    description: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"headline": self.headline, "higher_is_better": self.higher_is_better, "chance": self.chance,
                "description": self.description}


@dataclass
class Samples:
    """Per-test-case outputs of one column, from which the leaderboard recomputes the score on
    resampled test cases (bootstrap CIs, paired tests). ``kind`` names the score's formula
    (:mod:`vlpbench.board.resample`): ``mean`` (``values`` [.., n]), ``accuracy`` (``predicted``
    [.., n], ``labels`` [n]), ``ratio`` (``numerator``, ``denominator`` [n]), ``auroc`` (``scores``
    [.., n, L], ``labels`` [n, L]; macro over labels with both classes), ``map`` (COCO-style mAP from
    per-detection matches: ``image``, ``score``, ``label`` [d], ``matched`` [d, T], ``gt_count`` [n, C]).
    A leading axis, where there is one, is averaged (e.g. the linear probe's probe seeds)."""

    kind: str
    arrays: dict[str, np.ndarray]


@dataclass
class TaskResult:
    """Scores by column (e.g. ``auroc@1%``), each with the protocol it was measured under, what the
    task declares about each column, and the per-test-case outputs behind each score."""

    scores: dict[str, float]
    protocols: dict[str, dict[str, Any]]
    details: dict[str, Any] = field(default_factory=dict)
    columns: dict[str, Column] = field(default_factory=dict)
    samples: dict[str, Samples] = field(default_factory=dict)


def test_cases_field() -> Any:
    """The ``test_cases`` parameter of a task that can score the first N cases of its test split."""
    return Field(None, ge=1, exclude_if=lambda value: value is None,  # runs from before the option keep their identity
                 description="score only the first N cases of the test split (all when unset): a larger split "
                             "for one task, the same cases as a smaller one for another")


def scored_cases(task: str, images: Any, cases: int | None) -> int:
    """How many cases of a test split a task scores: all of them, or its ``test_cases`` first ones.

    On SynthCXR the first N studies of a larger split are the N-study split itself (each chunk of
    studies has its own seed), so a task with ``test_cases: N`` on a split of M > N scores the cases
    it would score on a split of N."""
    available = int(images.shape[0])
    if cases is None:
        return available
    if cases > available:
        raise ConfigError(f"{task}.test_cases = {cases}, but its test split has only {available:,} cases: lower "
                          f"{task}.test_cases or raise the dataset's test size (e.g. data.test_size).")
    return cases


def fraction_label(fraction: float) -> str:
    return f"{fraction * 100:g}%"


def _feature_cache() -> "FeatureCache":
    return FeatureCache()


@torch.no_grad()
def frozen_global_features(encoder: torch.nn.Module, images: Any, device: torch.device,
                           batch_size: int = 256, precision: str = "fp32") -> torch.Tensor:
    """Pre-projection global features [n,D] of a split's images, in eval mode, on the CPU.

    ``images``: the split's array [n,H,W] (uint8 from the image store, or floats in [0,1]), read and
    normalised a batch at a time, or model-ready images [n,1,H,W] (the former form)."""
    return global_batches(encoder, images, device, batch_size, precision, embed=False)


@torch.no_grad()
def image_embeddings(encoder: torch.nn.Module, images: Any, device: torch.device,
                     batch_size: int = 256, precision: str = "fp32") -> torch.Tensor:
    """Projected, L2-normalised global image embeddings v [n,D] of a split's images (or model-ready
    images [n,1,H,W]), on the CPU."""
    return torch.nn.functional.normalize(global_batches(encoder, images, device, batch_size, precision, embed=True),
                                         dim=-1)


@torch.no_grad()
def text_embeddings(encoder: torch.nn.Module, reports: list[list[str]], device: torch.device,
                    batch_size: int = 256) -> torch.Tensor:
    """Projected, L2-normalised global report embeddings t [n,D] of reports given as sentence lists."""
    was_training = encoder.training
    encoder.eval()
    tokens = encoder.tokenize(reports)
    chunks = []
    for i in range(0, len(tokens), batch_size):
        part = [t[i:i + batch_size].to(device) for t in (tokens.input_ids, tokens.attention_mask, tokens.sentence_index)]
        chunks.append(encoder(*part).global_emb.float().cpu())
    encoder.train(was_training)
    return torch.nn.functional.normalize(torch.cat(chunks), dim=-1)


def with_hash(protocol: dict[str, Any]) -> dict[str, Any]:
    """The protocol with its hash (the leaderboard ranks only numbers of equal hashes together)."""
    return {**protocol, "hash": protocol_hash(protocol)}


def nested_stratified_fractions(labels: np.ndarray, fractions: list[float], seed: int) -> dict[float, np.ndarray]:
    """Nested label-fraction subsets of a training split, each keeping a positive of every label.

    One permutation (``seed``) orders the split; the subset for fraction f is its first
    ``ceil(f·n)`` samples plus, for every label with no positive among them, that label's first
    positive in the permutation. Because both parts only grow with f, the 1 % set lies inside the
    10 % set, which lies inside the 100 % set. (A subset may exceed ``ceil(f·n)`` by at most one
    sample per label.)
    """
    n = len(labels)
    order = np.random.default_rng(seed).permutation(n)
    ranked = labels[order].astype(bool)  # [n, L] in permutation order
    first_positive = np.where(ranked.any(0), ranked.argmax(0), n)  # rank of each label's first positive
    subsets = {}
    for fraction in sorted(fractions):
        k = min(n, max(1, int(np.ceil(fraction * n))))
        ranks = set(range(k)) | {int(r) for r in first_positive if k <= r < n}
        subsets[fraction] = np.sort(order[sorted(ranks)])
    return subsets
