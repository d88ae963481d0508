"""Scores recomputed on resampled test cases: bootstrap CIs and paired permutation tests.

Every task saves, per score column, its per-test-case outputs (:class:`vlpbench.tasks.base.Samples`)
in ``samples.npz``. :func:`score` recomputes the column's score from them on any multiset of test
cases (an index array with repeats), vectorised over many resamples at once:

- ``mean``: mean of per-case values (per-image Dice, a retrieval query's hit);
- ``accuracy``: share of cases whose predicted class is the label;
- ``ratio``: Σ numerator / Σ denominator (pixel-pooled Dice; 0 when the denominator is 0);
- ``auroc``: macro AUROC (Mann–Whitney, ties averaged) over the labels with both classes present
  in the resample;
- ``map``: COCO-style mAP (101-point interpolated precision, mean over IoU thresholds and classes
  with a ground-truth box) from per-detection matches, which COCO decides per image, so a resample
  of images only reweights them.

A leading axis of the arrays (a linear probe's probe seeds) is averaged after scoring.

**Confidence interval of a variant** (:func:`bootstrap_ci`): two-level percentile bootstrap. Each of
``B`` resamples draws the seeds with replacement and, independently, the test cases with
replacement (the same cases for every drawn seed: the test set is shared), scores each drawn seed
on those cases and averages: the interval covers both test-set and seed variation. With one seed it
is the ordinary percentile bootstrap over test cases (checked against ``scipy.stats.bootstrap``).

**Difference from the baseline** (:func:`paired_test`): on the seeds both variants ran, the
difference of the seed-averaged scores. Its CI is the same two-level bootstrap with the case draw
shared by both variants (paired) and the seed pairs drawn together. Its p-value is a paired
permutation test over test cases: under the null hypothesis that the two models are exchangeable
on every case, each case's outputs are swapped between the two models (the same swap in every
seed pair) at random; p = (1 + #{|d_perm| ≥ |d|}) / (1 + P), and below about 10 / P, where
that count is too coarse for a board's adjustment, the tail of a normal fitted to the permutation
null (:func:`permutation_p`). Scores are replaced by their rank
within each model first (AUROC and AP depend only on each model's order, so the model's own score
is unchanged, and swapping never mixes two models' scales). For ``mean`` it is the sign-flip test
that ``scipy.stats.permutation_test(permutation_type="samples")`` runs. The p-value is conditional
on the trained models (test-set noise); seed noise enters the interval.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import norm, rankdata

KINDS = ("mean", "accuracy", "ratio", "auroc", "map")
CHUNK = 200  # resamples scored at once (bounds memory for large test sets)


def cases(kind: str, arrays: dict[str, np.ndarray]) -> int:
    """The number of test cases of a column's samples."""
    if kind == "map":
        return int(arrays["gt_count"].shape[0])
    if kind in ("auroc", "accuracy"):
        return int(np.asarray(arrays["labels"]).shape[0])
    if kind == "ratio":
        return int(arrays["numerator"].shape[-1])
    return int(arrays["values"].shape[-1])


def _leading(array: np.ndarray, case_axis_from_end: int) -> np.ndarray:
    """The array with exactly one leading (model) axis."""
    return array[None] if array.ndim == case_axis_from_end else array


def score(kind: str, arrays: dict[str, np.ndarray], index: np.ndarray | None = None) -> np.ndarray:
    """The column's score on the test cases ``index`` [B, m] (rows with repeats) → [B];
    ``index=None`` scores the full test set once (→ [1])."""
    n = cases(kind, arrays)
    index = np.arange(n)[None] if index is None else np.atleast_2d(index)
    out = [_score_chunk(kind, arrays, index[i:i + CHUNK]) for i in range(0, len(index), CHUNK)]
    return np.concatenate(out) if out else np.empty(0)


def _score_chunk(kind: str, arrays: dict[str, np.ndarray], index: np.ndarray) -> np.ndarray:
    if kind == "mean":
        values = _leading(np.asarray(arrays["values"], dtype=float), 1)  # [P, n]
        return values[:, index].mean(-1).mean(0)
    if kind == "accuracy":
        predicted = _leading(np.asarray(arrays["predicted"]), 1)  # [P, n]
        return (predicted[:, index] == np.asarray(arrays["labels"])[index][None]).mean(-1).mean(0)
    if kind == "ratio":
        numerator = np.asarray(arrays["numerator"], dtype=float)[index].sum(-1)
        denominator = np.asarray(arrays["denominator"], dtype=float)[index].sum(-1)
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1), 0.0)
    if kind == "auroc":
        return _auroc(_leading(np.asarray(arrays["scores"], dtype=float), 2), np.asarray(arrays["labels"]), index)
    if kind == "map":
        return _mean_average_precision(arrays, index)
    raise ValueError(f"unknown samples kind '{kind}' (known: {', '.join(KINDS)})")


def _auroc(scores: np.ndarray, labels: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Macro AUROC [B] of scores [P, n, L] against labels [n, L] on resamples index [B, m]."""
    return np.mean([auroc_matrix(model[index], labels[index]) for model in scores], 0)


def auroc_matrix(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Macro AUROC [B] of scores [B, m, L] against labels [B, m, L] (or [m, L]), over the labels with
    both classes present in each row; NaN where no label has both. Mann–Whitney with tied scores
    given their average rank (as ``scipy.stats.rankdata``), computed on the sorted rows."""
    truth = np.broadcast_to(np.asarray(labels).astype(bool), scores.shape)
    order = np.argsort(scores, axis=1, kind="stable")
    ordered = np.take_along_axis(scores, order, 1)
    positive = np.take_along_axis(truth, order, 1)
    m = scores.shape[1]
    position = np.arange(m).reshape(1, m, 1)
    starts = np.ones(ordered.shape, dtype=bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    ends = np.ones(ordered.shape, dtype=bool)
    ends[:, :-1] = starts[:, 1:]
    first = np.maximum.accumulate(np.where(starts, position, 0), axis=1)
    last = np.minimum.accumulate(np.where(ends, position, m)[:, ::-1], axis=1)[:, ::-1]
    ranks = (first + last) / 2 + 1  # average rank of each tie group
    positives = positive.sum(1)  # [B, L]
    negatives = m - positives
    total = np.where(positive, ranks, 0.0).sum(1)
    valid = (positives > 0) & (negatives > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        values = np.where(valid, (total - positives * (positives + 1) / 2) / (positives * negatives), np.nan)
    return _nanmean_rows(values)


def _nanmean_rows(values: np.ndarray) -> np.ndarray:
    counts = (~np.isnan(values)).sum(1)
    sums = np.nansum(values, 1)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _mean_average_precision(arrays: dict[str, np.ndarray], index: np.ndarray) -> np.ndarray:
    """COCO mAP [B] from per-detection matches on resamples of images index [B, m]."""
    gt = np.asarray(arrays["gt_count"], dtype=float)  # [n, C]
    image, label = np.asarray(arrays["image"], dtype=int), np.asarray(arrays["label"], dtype=int)
    matched, detection_score = np.asarray(arrays["matched"], dtype=bool), np.asarray(arrays["score"], dtype=float)
    n, classes = gt.shape
    counts = np.stack([np.bincount(row, minlength=n) for row in index])  # [B, n] draws of each image
    weights = counts.astype(float)
    thresholds = np.linspace(0, 1, 101)
    per_class = []
    for c in range(classes):
        positives = weights @ gt[:, c]  # [B]
        mine = np.flatnonzero(label == c)
        mine = mine[np.argsort(-detection_score[mine], kind="mergesort")]
        w = counts[:, image[mine]].astype(np.int32)  # [B, d]: integer counts, so the cumulative sums are exact
        detections = np.cumsum(w, 1, dtype=np.int64)  # tp + fp at each rank, the same for every IoU threshold
        ap_t = []
        for t in range(matched.shape[1]):
            tp = np.cumsum(w * matched[mine, t], 1, dtype=np.int64)
            with np.errstate(invalid="ignore", divide="ignore"):
                recall = tp / positives[:, None]
            precision = tp / (detections + np.spacing(1))
            envelope = np.maximum.accumulate(precision[:, ::-1], 1)[:, ::-1] if precision.shape[1] else precision
            ap = np.zeros(len(index))
            for b in range(len(index)):
                if precision.shape[1] == 0:
                    continue
                where = np.searchsorted(recall[b], thresholds, side="left")
                inside = where < precision.shape[1]
                ap[b] = envelope[b, where[inside]].sum() / len(thresholds)
            ap_t.append(ap)
        per_class.append(np.where(positives > 0, np.mean(ap_t, 0) if ap_t else 0.0, np.nan))
    return _nanmean_rows(np.stack(per_class, 1))


def _rank_transform(kind: str, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Scores replaced by their ranks within the model (scale-free, same AUROC / AP)."""
    if kind == "auroc":
        scores = np.asarray(arrays["scores"], dtype=float)
        return {**arrays, "scores": rankdata(scores, axis=-2) / scores.shape[-2]}
    if kind == "map":
        ranked = rankdata(np.asarray(arrays["score"], dtype=float)) / max(1, len(arrays["score"]))
        return {**arrays, "score": ranked}
    return arrays


def _swap(kind: str, a: dict[str, np.ndarray], b: dict[str, np.ndarray], swap: np.ndarray) -> tuple[dict, dict]:
    """Both models' samples with the outputs of the cases in ``swap`` [n] bool exchanged."""
    if kind == "mean":
        va, vb = np.asarray(a["values"], dtype=float), np.asarray(b["values"], dtype=float)
        return {"values": np.where(swap, vb, va)}, {"values": np.where(swap, va, vb)}
    if kind == "accuracy":
        pa, pb = np.asarray(a["predicted"]), np.asarray(b["predicted"])
        return {**a, "predicted": np.where(swap, pb, pa)}, {**b, "predicted": np.where(swap, pa, pb)}
    if kind == "ratio":
        out_a, out_b = {}, {}
        for key in ("numerator", "denominator"):
            xa, xb = np.asarray(a[key], dtype=float), np.asarray(b[key], dtype=float)
            out_a[key], out_b[key] = np.where(swap, xb, xa), np.where(swap, xa, xb)
        return out_a, out_b
    if kind == "auroc":
        sa, sb = np.asarray(a["scores"]), np.asarray(b["scores"])
        mask = swap[:, None]
        return {**a, "scores": np.where(mask, sb, sa)}, {**b, "scores": np.where(mask, sa, sb)}
    if kind == "map":
        take_b = swap[np.asarray(b["image"], dtype=int)]
        take_a = swap[np.asarray(a["image"], dtype=int)]
        merged = []
        for first, second, keep_first, keep_second in ((a, b, ~take_a, take_b), (b, a, ~take_b, take_a)):
            merged.append({"gt_count": first["gt_count"], **{
                key: np.concatenate([np.asarray(first[key])[keep_first], np.asarray(second[key])[keep_second]])
                for key in ("image", "label", "score", "matched")}})
        return merged[0], merged[1]
    raise ValueError(f"unknown samples kind '{kind}'")


def _swapped_difference(kind: str, a: dict[str, np.ndarray], b: dict[str, np.ndarray], swaps: np.ndarray) -> np.ndarray:
    """score(a') − score(b') [B] where a', b' exchange the outputs of the cases ``swaps`` [B, n] marks."""
    if kind == "mean":  # mean(a') − mean(b') = mean over cases of ±(a − b): the sign-flip test
        difference = (_leading(np.asarray(a["values"], dtype=float), 1) - _leading(np.asarray(b["values"], dtype=float), 1)).mean(0)
        return np.where(swaps, -difference, difference).mean(1)
    if kind == "accuracy":
        labels = np.asarray(a["labels"])
        difference = ((_leading(np.asarray(a["predicted"]), 1) == labels).astype(float)
                      - (_leading(np.asarray(b["predicted"]), 1) == labels)).mean(0)
        return np.where(swaps, -difference, difference).mean(1)
    if kind == "ratio":
        parts = {}
        for key in ("numerator", "denominator"):
            xa, xb = np.asarray(a[key], dtype=float), np.asarray(b[key], dtype=float)
            parts[key] = (np.where(swaps, xb, xa).sum(1), np.where(swaps, xa, xb).sum(1))
        (na, nb), (da, db) = parts["numerator"], parts["denominator"]
        ratio = lambda x, y: np.where(y > 0, x / np.where(y > 0, y, 1), 0.0)  # noqa: E731
        return ratio(na, da) - ratio(nb, db)
    if kind == "auroc":
        sa, sb = _leading(np.asarray(a["scores"], dtype=float), 2), _leading(np.asarray(b["scores"], dtype=float), 2)
        labels = np.asarray(a["labels"])
        mask = swaps[:, :, None]
        out = np.zeros(len(swaps))
        for pa, pb in zip(sa, sb) if len(sa) == len(sb) else [(sa.mean(0), sb.mean(0))]:
            out += (auroc_matrix(np.where(mask, pb, pa), labels) - auroc_matrix(np.where(mask, pa, pb), labels)) / max(1, min(len(sa), len(sb)))
        return out
    out = np.empty(len(swaps))
    for i, swap in enumerate(swaps):  # map: per permutation (COCO matches are per image)
        sa, sb = _swap(kind, a, b, swap)
        out[i] = score(kind, sa)[0] - score(kind, sb)[0]
    return out


def bootstrap_ci(kind: str, seeds: list[dict[str, np.ndarray]], resamples: int = 1000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the seed-averaged score over seeds × test cases (see the module doc)."""
    rng = np.random.default_rng(seed)
    n = cases(kind, seeds[0])
    index = rng.integers(0, n, size=(resamples, n))
    per_seed = np.stack([score(kind, arrays, index) for arrays in seeds])  # [S, B]
    if len(seeds) > 1:
        drawn = rng.integers(0, len(seeds), size=(resamples, len(seeds)))
        replicates = np.take_along_axis(per_seed.T, drawn, 1).mean(1)
    else:
        replicates = per_seed[0]
    replicates = replicates[np.isfinite(replicates)]
    if len(replicates) == 0:
        return float("nan"), float("nan")
    alpha = (1 - level) / 2
    return float(np.quantile(replicates, alpha)), float(np.quantile(replicates, 1 - alpha))


def paired_test(kind: str, variant: list[dict[str, np.ndarray]], baseline: list[dict[str, np.ndarray]],
                resamples: int = 1000, permutations: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Difference of seed-averaged scores (variant − baseline) over seed pairs, its bootstrap CI and
    the paired permutation p-value (see the module doc). ``variant`` and ``baseline`` are the
    samples of the same seeds, in the same order, on the same test cases."""
    rng = np.random.default_rng(seed)
    pairs = len(variant)
    n = cases(kind, variant[0])
    observed = float(np.mean([score(kind, a)[0] - score(kind, b)[0] for a, b in zip(variant, baseline)]))
    index = rng.integers(0, n, size=(resamples, n))
    per_pair = np.stack([score(kind, a, index) - score(kind, b, index) for a, b in zip(variant, baseline)])  # [S, B]
    drawn = rng.integers(0, pairs, size=(resamples, pairs)) if pairs > 1 else np.zeros((resamples, 1), dtype=int)
    replicates = np.take_along_axis(per_pair.T, drawn, 1).mean(1)
    replicates = replicates[np.isfinite(replicates)]
    low, high = (np.quantile(replicates, [0.025, 0.975]) if len(replicates) else (np.nan, np.nan))
    ranked = [(_rank_transform(kind, a), _rank_transform(kind, b)) for a, b in zip(variant, baseline)]
    null = []
    for begin in range(0, permutations, CHUNK):
        swaps = rng.random((min(CHUNK, permutations - begin), n)) < 0.5  # [B, n]
        null.append(sum(_swapped_difference(kind, a, b, swaps) for a, b in ranked) / pairs)
    p = permutation_p(np.concatenate(null), observed)
    return {"pairs": pairs, "difference": observed, "diff_ci95_low": float(low), "diff_ci95_high": float(high),
            "p": p}


def permutation_p(null: np.ndarray, observed: float, resolved: int = 10) -> float:
    """Two-sided p of ``observed`` under the permutation null ``null``.

    The Monte Carlo p ``(1 + #{|null| ≥ |observed|}) / (1 + P)`` where at least ``resolved``
    permutations are as extreme; further out its resolution (1 / (P + 1)) would make every
    adjusted p-value of a large board ≥ m / (P + 1), so there the tail of a normal fitted to the
    permutation null (mean 0 by symmetry, its standard deviation) is used instead."""
    null = null[np.isfinite(null)]
    if len(null) == 0:
        return float("nan")
    extreme = int((np.abs(null) >= abs(observed) - 1e-12).sum())
    if extreme >= resolved:
        return (1 + extreme) / (1 + len(null))
    spread = float(np.sqrt(np.mean(null ** 2)))
    if spread == 0:
        return 1.0 if observed == 0 else 0.0
    return float(2 * norm.sf(abs(observed) / spread))
