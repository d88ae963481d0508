"""The two-process equivalence check of negative scopes (CPU, gloo), for tests and check-plugin.

A *case* is an objective (global loss, miner, weightings, heads) and a negative scope. On fixed
feature tensors of 2B samples, for a few steps (so that stateful components — EMAs, k-means —
are compared after their state has moved):

- ``gathered``, mode ``own``: each of two processes holds B samples; its loss must equal the loss
  of one process holding all 2B, and the gradient with respect to its B rows of every feature
  tensor must equal the rows of the single process's gradient (every term compares across the
  whole gathered batch: global losses, miners, weightings);
- ``gathered``, mode ``ddp`` (what training computes): the mean of the two processes' losses must
  equal the single process's loss, and each process's feature gradient, divided by 2 as
  DistributedDataParallel's average does, the single process's rows — this also holds for
  objectives that mix gathered terms with per-sample local terms (a head's patch loss);
- ``local``: each process's loss and gradients must equal those of one process that holds only
  that process's B samples (and the two-process mean is the mean of those two single runs).

One spawn of the process group serves every case. Comparisons are on feature tensors, not on
encoders, because BatchNorm statistics of B and 2B samples differ by design.
"""

from __future__ import annotations

import copy
import functools
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from vlpbench.config.schema import ObjectiveConfig
from vlpbench.core.build import build_component
from vlpbench.core.context import BuildContext
from vlpbench.core.kinds import kind_of
from vlpbench.core.plugins import get_registry
from vlpbench.data.synthcxr import SynthCXRConfig, generate
from vlpbench.devkit.testing import feature_inputs
from vlpbench.objective.objective import Objective

STEPS = 3
BATCH = 6  # per process
DIM = 16
GRID = (2, 2)
FEATURES = ("image_global", "text_global", "patches", "sentences", "words")
DATA = {"name": "synthcxr", "image_size": 32, "pretrain_size": 64, "train_size": 8, "val_size": 8, "test_size": 8}


@dataclass
class Case:
    label: str
    objective: dict[str, Any]  # an ObjectiveConfig mapping, without negative_scope
    scope: str  # local | gathered
    mode: str = "ddp"  # own | ddp (see the module docstring; only matters for gathered)
    #: The scope whose single-process reference the two processes are compared with (default:
    #: ``scope``). Only tests set it, to show that a wrong scope is caught.
    reference_scope: str | None = None

    def config(self, scope: str | None = None) -> dict[str, Any]:
        return {**copy.deepcopy(self.objective), "negative_scope": scope or self.scope}


@dataclass
class Outcome:
    case: Case
    ok: bool
    message: str = ""
    worst: dict[str, float] = field(default_factory=dict)  # largest difference per compared quantity
    #: What process 0 computed at each step (loss terms and miner statistics), to show that the
    #: compared mechanism was active.
    steps: list[dict[str, Any]] = field(default_factory=list)


def _build_objective(objective: dict[str, Any]) -> Any:
    torch.manual_seed(0)
    registry = get_registry()
    context = BuildContext(embed_dim=DIM, image_size=32, patch_grid=GRID, seed=0, total_steps=100)
    source = build_component(registry, "dataset", DATA, context)
    context.corpus = list(source.split("pretrain").reports)
    context.label_names = tuple(source.label_names)
    model = Objective(ObjectiveConfig.model_validate(objective), registry, context)
    model.train()
    return model


@functools.lru_cache(maxsize=1)
def _corpus_labels() -> Any:
    """Labels of the 64 pretraining samples the fixed features index (generated once per process)."""
    return torch.from_numpy(generate("pretrain", 64, SynthCXRConfig(seed=0, image_size=32)).labels).float()


def fixed_features(step: int, samples: int) -> dict[str, Any]:
    """Seeded feature tensors of ``samples`` rows for ``step`` (the same in every process)."""
    generator = torch.Generator().manual_seed(1000 + step)
    rand = lambda *shape: torch.randn(*shape, generator=generator, dtype=torch.float64).float()  # noqa: E731
    index = torch.randperm(64, generator=generator)[:samples]
    labels = _corpus_labels()[index]
    return {"image_global": rand(samples, DIM), "text_global": rand(samples, DIM),
            "patches": rand(samples, GRID[0] * GRID[1], DIM), "sentences": rand(samples, 3, DIM),
            "words": rand(samples, 5, DIM), "sentence_counts": (torch.arange(samples) % 3 + 1).tolist(),
            "word_counts": (torch.arange(samples) % 5 + 1).tolist(), "index": index, "labels": labels}


def _rows(features: dict[str, Any], rows: slice) -> dict[str, Any]:
    return {k: v[rows] for k, v in features.items()}


def _step(objective: Any, features: dict[str, Any], step: int) -> dict[str, Any]:
    """One forward/backward on ``features``; the loss, each term and the feature gradients."""
    leaves = {k: features[k].clone().requires_grad_(True) for k in FEATURES}
    inputs = feature_inputs(leaves["image_global"], leaves["text_global"], leaves["patches"], leaves["sentences"],
                            features["sentence_counts"], leaves["words"], features["word_counts"], grid=GRID,
                            labels=features["labels"], index=features["index"], progress=0.5)
    torch.manual_seed(step)  # components that draw random numbers (k-means initialisation) draw the same
    out = objective(inputs)
    out.total.backward()
    zeros = lambda t: torch.zeros_like(t)  # noqa: E731
    return {"total": float(out.total.detach()), "terms": {k: float(v.detach()) for k, v in out.terms.items()},
            "stats": {k: float(v) for k, v in out.stats.items()},
            "grads": {k: (v.grad if v.grad is not None else zeros(v)).detach().clone() for k, v in leaves.items()}}


def _run_steps(objective_config: dict[str, Any], rows: slice | None, samples: int,
               gradient: str = "own") -> list[dict[str, Any]]:
    objective = _build_objective(objective_config)
    objective.use_gradient(gradient)
    results = []
    for step in range(STEPS):
        features = fixed_features(step, samples)
        results.append(_step(objective, features if rows is None else _rows(features, rows), step))
    return results


def _worker(rank: int, world: int, rendezvous: str, cases: list[Case], out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world)
    try:
        results = {}
        for number, case in enumerate(cases):
            try:
                gradient = "summed" if case.mode == "ddp" else "own"
                results[number] = _run_steps(case.config(), slice(rank * BATCH, (rank + 1) * BATCH), world * BATCH,
                                             gradient)
            except Exception as exc:  # reported per case by the parent
                results[number] = f"{type(exc).__name__}: {exc}"
        torch.save(results, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _compare(expected: list[dict[str, Any]], got: list[dict[str, Any]], rows: slice | None,
             rtol: float, atol: float) -> tuple[bool, str, dict[str, float]]:

    worst: dict[str, float] = {}
    for step, (want, have) in enumerate(zip(expected, got)):
        pairs = [("loss", torch.tensor(want["total"]), torch.tensor(have["total"]))]
        for name in FEATURES:
            reference = want["grads"][name] if rows is None else want["grads"][name][rows]
            pairs.append((f"d/d{name}", reference, have["grads"][name]))
        for label, a, b in pairs:
            difference = float((a - b).abs().max()) if a.numel() else 0.0
            worst[label] = max(worst.get(label, 0.0), difference)
            if not torch.allclose(a, b, rtol=rtol, atol=atol):
                return False, f"step {step}: {label} differs by {difference:.3g} (single process vs 2 processes)", worst
    return True, "", worst


def _ddp_average(first: list[dict[str, Any]], second: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per step: the mean loss, and both processes' feature gradients divided by 2, in rank order."""
    return [{"total": 0.5 * (a["total"] + b["total"]),
             "grads": {k: 0.5 * torch.cat([a["grads"][k], b["grads"][k]]) for k in FEATURES}}
            for a, b in zip(first, second)]


def check_cases(cases: list[Case], rtol: float = 1e-4, atol: float = 1e-5) -> list[Outcome]:
    """Run every case on 2 processes and compare with single-process references."""
    with tempfile.TemporaryDirectory(prefix="vlpbench-2proc-") as folder:
        mp.start_processes(_worker, args=(2, str(Path(folder) / "rendezvous"), cases, folder), nprocs=2,
                           join=True, start_method="spawn")
        import torch

        ranks = [torch.load(Path(folder) / f"rank{r}.pt", weights_only=True) for r in range(2)]
    outcomes = []
    for number, case in enumerate(cases):
        failures = [r[number] for r in ranks if isinstance(r[number], str)]
        if failures:
            outcomes.append(Outcome(case, False, failures[0]))
            continue
        ok, message, worst = True, "", {}
        expected = case.reference_scope or case.scope
        if expected == "gathered" and case.mode == "ddp":
            reference = _run_steps(case.config(expected), None, 2 * BATCH)
            averaged = _ddp_average(ranks[0][number], ranks[1][number])
            ok, message, worst = _compare(reference, averaged, None, rtol, atol)
        else:
            for rank in range(2):
                rows = slice(rank * BATCH, (rank + 1) * BATCH)
                if expected == "gathered":
                    reference, own = _run_steps(case.config(expected), None, 2 * BATCH), rows
                else:
                    reference, own = _run_steps(case.config(expected), rows, 2 * BATCH), None
                good, text, seen = _compare(reference, ranks[rank][number], own, rtol, atol)
                worst = {k: max(v, worst.get(k, 0.0)) for k, v in seen.items()}
                if not good and ok:
                    ok, message = False, f"rank {rank}: {text}"
        steps = [{"terms": r["terms"], "stats": r["stats"]} for r in ranks[0][number]]
        outcomes.append(Outcome(case, ok, message, worst, steps))
    return outcomes


def component_cases(kind: str, name: str, params: dict[str, Any] | None = None) -> list[Case]:
    """The local and gathered cases of one objective component (in an InfoNCE objective)."""
    spec = {"name": name, **(params or {})}
    record = kind_of(kind)
    if record.slot is None or not record.slot.in_objective:
        raise KeyError(kind)
    slot = record.slot.entry(spec)
    return [Case(f"{name} ({scope})", slot, scope) for scope in ("local", "gathered")]
