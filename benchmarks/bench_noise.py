"""Downstream-only noise of the board's headline columns, measured (issue 18). A benchmark: it prints
figures and asserts nothing.

    .venv/bin/python benchmarks/bench_noise.py [--experiment experiments/ablation.yaml] [--variant clip]
        [--seed 0] [--repeats 5] [--run DIR] [--reference results/reference/ablation] [--fresh DIR]
        [--threads 1] [--json FILE]
    .venv/bin/python benchmarks/bench_noise.py --compare-only --fresh DIR [--reference results/reference/ablation]

One encoder is pretrained exactly as ``vlpbench run`` pretrains it (:func:`vlpbench.engine.runner.execute_run`,
into ``--work``; the run's own evaluation is its ``metrics.json``), or taken from a finished run folder
with ``checkpoints/final.pt`` (``--run DIR``; its ``config.yaml`` gives the config, so the tasks are
that run's). Its frozen encoders are then evaluated ``--repeats`` times with different *downstream*
seeds only: the label-fraction draw (``sampling_seed``) stays as the protocol has it; the head's
initialisation and data order move (``train_seed`` of the dense tasks, ``probe_seeds`` of the linear
probe; the first repetition (r = 0) is the protocol's own seeds, so it is the board's evaluation). Tasks without a
downstream seed (zero-shot, retrieval) are evaluated too; their spread is 0 by construction.

Per headline column (×100, as the board shows): the mean and the sample standard deviation over the
repetitions (the downstream-only noise floor); with ``--reference`` (a board's experiment folder,
``runs/*/metrics.json``) the same variant's spread over its seeds there and the ratio noise / seed
spread; the difference between this encoder's run and the reference run of the same variant and seed
(with ``--threads`` equal to the reference's, the same code and versions, a difference other than 0
comes from the machine). With ``--fresh DIR`` (runs of the same experiment made elsewhere) the
per-column difference fresh − reference for every variant/seed both have: the cross-machine
difference (``--compare-only``: that comparison alone, from the runs' own ``metrics.json``, with each
column's largest difference in units of the reference's noise floor). The issue's targets: noise std ≤ 1 point for the linear probe, ≤ 2 points for
segmentation and detection at every fraction.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

#: the issue's targets for the downstream-only noise (standard deviation, points ×100), per task
TARGETS = {"linear_probe": 1.0, "segmentation": 2.0, "detection": 2.0}


# ---------------------------------------------------------------- pure parts (tested without training)

def headline_scores(metrics: Mapping[str, Any]) -> dict[str, float]:
    """``{"task column": score}`` of a ``metrics.json``'s headline columns (a column a task does not
    describe counts as headline, as on the board); tasks with an error give nothing."""
    out: dict[str, float] = {}
    for task, result in metrics.items():
        if not isinstance(result, Mapping) or result.get("error"):
            continue
        columns = result.get("columns") or {}
        for column, value in (result.get("scores") or {}).items():
            if (columns.get(column) or {}).get("headline", True):
                out[f"{task} {column}"] = float(value)
    return out


def downstream_seed_overrides(params: Any, repetition: int) -> dict[str, Any]:
    """The task parameters that repetition ``repetition`` changes: the head's seeds only.

    ``train_seed`` (segmentation, detection: head initialisation and batch order) moves by
    ``repetition``; ``probe_seeds`` (linear probe: batch order; its head starts at zero) by
    ``repetition`` × their number, so that repetitions never share a probe seed. ``sampling_seed``
    (which images make up a label fraction) is never touched. Repetition 0 changes nothing.
    """
    overrides: dict[str, Any] = {}
    if repetition == 0:
        return overrides
    if isinstance(getattr(params, "train_seed", None), int):
        overrides["train_seed"] = params.train_seed + repetition
    seeds = getattr(params, "probe_seeds", None)
    if isinstance(seeds, (list, tuple)) and seeds:
        overrides["probe_seeds"] = [int(s) + repetition * len(seeds) for s in seeds]
    return overrides


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n − 1, as the board's seed spread); std is NaN below 2 values."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    mean = sum(values) / n
    if n < 2:
        return mean, math.nan
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def target_for(column: str) -> float | None:
    """The issue's noise target (points) for ``"task column"``; None where the issue sets none."""
    task = column.split(" ", 1)[0].partition("#")[0]
    return TARGETS.get(task)


def noise_table(repetitions: Sequence[Mapping[str, float]], seed_scores: Sequence[Mapping[str, float]] = (),
                this_run: Mapping[str, float] | None = None,
                reference_same_seed: Mapping[str, float] | None = None) -> list[dict[str, Any]]:
    """One row per headline column (scores in [0, 1] in, points ×100 out): downstream-only noise
    (mean, std, range over ``repetitions``), the seed spread over ``seed_scores`` (the reference
    board's runs of the variant), noise / seed spread, the target and whether the noise meets it, and
    ``this_run − reference_same_seed`` when both are given."""
    columns = list(dict.fromkeys(c for rep in repetitions for c in rep))
    rows = []
    for column in columns:
        values = [100 * rep[column] for rep in repetitions if column in rep]
        mean, std = mean_std(values)
        seeds = [100 * s[column] for s in seed_scores if column in s]
        seed_mean, seed_std = mean_std(seeds)
        target = target_for(column)
        ratio = std / seed_std if seeds and seed_std > 0 and not math.isnan(std) else math.nan
        diff = math.nan
        if this_run is not None and reference_same_seed is not None and column in this_run and column in reference_same_seed:
            diff = 100 * (this_run[column] - reference_same_seed[column])
        rows.append({"column": column, "repeats": len(values), "noise_mean": mean, "noise_std": std,
                     "noise_min": min(values) if values else math.nan, "noise_max": max(values) if values else math.nan,
                     "seeds": len(seeds), "seed_mean": seed_mean, "seed_std": seed_std, "ratio": ratio,
                     "target": target, "meets": None if target is None or math.isnan(std) else std <= target,
                     "run_minus_reference": diff})
    return rows


def cross_machine(fresh: Iterable[Mapping[str, Any]], reference: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per (variant, seed) that both folders hold: fresh − reference of every headline column both
    have (points ×100), and whether the runs have the same identity (run hash)."""
    by_key = {(r["variant"], r["seed"]): r for r in reference}
    out = []
    for run in sorted(fresh, key=lambda r: (r["variant"], r["seed"])):
        ref = by_key.get((run["variant"], run["seed"]))
        if ref is None:
            continue
        shared = [c for c in run["scores"] if c in ref["scores"]]
        out.append({"variant": run["variant"], "seed": run["seed"], "same_identity": run.get("run_hash") == ref.get("run_hash"),
                    "diff": {c: 100 * (run["scores"][c] - ref["scores"][c]) for c in shared}})
    return out


def largest_differences(pairs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per column over ``cross_machine`` pairs: the largest |difference|, where, and the mean |difference|."""
    columns = list(dict.fromkeys(c for p in pairs for c in p["diff"]))
    rows = []
    for column in columns:
        found = [(abs(p["diff"][column]), p["diff"][column], p) for p in pairs if column in p["diff"]]
        biggest = max(found, key=lambda f: f[0])
        rows.append({"column": column, "pairs": len(found), "mean_abs": sum(f[0] for f in found) / len(found),
                     "max_abs": biggest[0], "max_signed": biggest[1],
                     "at": f"{biggest[2]['variant']} seed {biggest[2]['seed']}"})
    return rows


def _num(value: float | None, digits: int = 1) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def format_noise_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The noise rows as a Markdown table (readable as plain text too)."""
    lines = ["| column | downstream noise: mean ± std (min–max), k | seed spread: mean ± std, n | noise / seed std | "
             "run − ref., same seed | target | meets |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        meets = "—" if r["meets"] is None else ("yes" if r["meets"] else "**no**")
        seed = f"{_num(r['seed_mean'])} ± {_num(r['seed_std'])}, {r['seeds']}" if r["seeds"] else "—"
        lines.append(f"| {r['column']} | {_num(r['noise_mean'])} ± {_num(r['noise_std'], 2)} "
                     f"({_num(r['noise_min'])}–{_num(r['noise_max'])}), {r['repeats']} | {seed} | {_num(r['ratio'], 2)} | "
                     f"{_num(r['run_minus_reference'])} | {'≤ ' + _num(r['target']) if r['target'] is not None else '—'} | {meets} |")
    return "\n".join(lines)


def format_cross_machine(rows: Sequence[Mapping[str, Any]], floor: Mapping[str, float] | None = None) -> str:
    """The cross-machine rows as a Markdown table; with ``floor`` (board column → noise std as a
    fraction, ``noise_floor.json``) also each column's largest difference in units of its noise std."""
    header = "| column | runs compared | mean |fresh − ref.| | largest |fresh − ref.| (signed, where) |"
    lines = [header + (" largest / noise std |" if floor is not None else ""),
             "|---|---|---|---|" + ("---|" if floor is not None else "")]
    for r in rows:
        line = (f"| {r['column']} | {r['pairs']} | {_num(r['mean_abs'])} | {_num(r['max_abs'])} "
                f"({r['max_signed']:+.1f}, {r['at']}) |")
        if floor is not None:
            std = floor.get(str(r["column"]).replace(" ", "/", 1))
            line += f" {_num(r['max_abs'] / (100 * std), 1) if std else '—'} |"
        lines.append(line)
    return "\n".join(lines)


def compare_only(fresh: Path, reference_root: Path) -> list[dict[str, Any]]:
    """``--compare-only``: print fresh − reference for every run both folders hold, against the
    reference's noise floor when it has one; no evaluation (the runs' own ``metrics.json``)."""
    from vlpbench.board.noise import load_noise_floor

    pairs = cross_machine(read_runs(fresh), read_runs(reference_root))
    floor, notes = load_noise_floor([reference_root])
    print(f"{fresh} − {reference_root}: {len(pairs)} runs of the same variant and seed "
          f"({sum(p['same_identity'] for p in pairs)} with the same run identity); points ×100"
          + (f"; {notes[0]}" if notes else "; no noise floor in the reference"))
    print(format_cross_machine(largest_differences(pairs), floor if floor else None) if pairs
          else "no run of the fresh folder is in the reference")
    return pairs


# ---------------------------------------------------------------- run folders

def read_runs(folder: Path) -> list[dict[str, Any]]:
    """The finished runs under ``folder`` (an experiment folder with ``runs/``, or the ``runs`` folder,
    or one run folder): ``{variant, seed, run_hash, path, scores}`` with the headline scores."""
    import yaml

    folder = Path(folder)
    if (folder / "metrics.json").is_file():
        candidates = [folder]
    else:
        base = folder / "runs" if (folder / "runs").is_dir() else folder
        candidates = sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
    runs = []
    for path in candidates:
        status = path / "status.json"
        if not (path / "metrics.json").is_file() or not (path / "config.yaml").is_file():
            continue
        if status.is_file() and json.loads(status.read_text()).get("state") != "finished":
            continue
        config = yaml.safe_load((path / "config.yaml").read_text())
        runs.append({"variant": config["variant"], "seed": int(config["seed"]), "run_hash": config.get("run_hash"),
                     "path": str(path), "scores": headline_scores(json.loads((path / "metrics.json").read_text()))})
    return runs


# ---------------------------------------------------------------- training and evaluation

def pretrained_run(args: argparse.Namespace) -> Path:
    """The run folder whose encoder is measured: ``--run``, or one pretrained (and evaluated) here by
    the engine, exactly as ``vlpbench run`` makes a board's run."""
    if args.run is not None:
        run = Path(args.run)
        if not (run / "checkpoints" / "final.pt").is_file() or not (run / "config.yaml").is_file():
            raise SystemExit(f"--run {run}: no checkpoints/final.pt and config.yaml there. Give a finished run folder "
                             "made on this machine (published boards keep no checkpoints), or leave --run out to "
                             "pretrain one here.")
        return run
    from vlpbench.config.loader import load_experiment
    from vlpbench.engine.rundir import run_dir
    from vlpbench.engine.runner import execute_run

    experiment = load_experiment(args.experiment, seeds=[args.seed], variants=[args.variant])
    spec = experiment.runs[0]
    run = run_dir(Path(args.work), experiment.name, spec.run_id)
    if run.finished:
        print(f"pretrained and evaluated earlier: {run.path}", flush=True)
    else:
        print(f"pretraining {spec.variant} seed {spec.seed} as `vlpbench run` does -> {run.path}", flush=True)
        started = time.perf_counter()
        execute_run(spec, run, progress=False, reuse_pretraining=False)
        print(f"  pretrained and evaluated in {time.perf_counter() - started:.0f} s", flush=True)
    return run.path


def frozen_run(run: Path) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
    """A finished run's frozen encoders, ready to evaluate: (config, built run, device, Encoders,
    recorded config.yaml). The caller closes the Encoders."""
    import yaml

    from vlpbench.config.schema import RunConfig
    from vlpbench.core.plugins import get_registry
    from vlpbench.engine.checkpoint import load_checkpoint
    from vlpbench.engine.model import build_run
    from vlpbench.engine.pretrain import resolve_device
    from vlpbench.tasks.base import Encoders

    recorded = yaml.safe_load((run / "config.yaml").read_text())
    config = RunConfig.model_validate(recorded["config"])
    built = build_run(config, get_registry(), int(recorded["seed"]))
    built.model.load_state_dict(load_checkpoint(run / "checkpoints" / "final.pt")["model"])
    device = resolve_device(config.pretrain.device)
    built.model.to(device)
    built.model.eval()
    # one Encoders for every evaluation: the encoders are frozen, so their features are the same each time
    encoders = Encoders(built.model.image_encoder, built.model.text_encoder, precision=config.pretrain.precision)
    return config, built, device, encoders, recorded


def evaluate_repetitions(run: Path, repeats: int) -> tuple[list[dict[str, float]], list[float], dict[str, Any]]:
    """Headline scores of ``repeats`` evaluations of ``run``'s frozen encoders (repetition r with the
    downstream seeds of :func:`downstream_seed_overrides`), their wall times, and the config."""
    from vlpbench.config.schema import ComponentSpec
    from vlpbench.core.build import build_component
    from vlpbench.core.plugins import get_registry
    from vlpbench.engine.scoring import evaluate_tasks

    config, built, device, encoders, recorded = frozen_run(run)
    registry = get_registry()
    scores, seconds = [], []
    try:
        for repetition in range(repeats):
            tasks = []
            for spec in config.tasks:
                task = build_component(registry, "task", spec, built.context)
                tasks.append(ComponentSpec(name=spec.name, **{**spec.params(),
                                                              **downstream_seed_overrides(task.params, repetition)}))
            started = time.perf_counter()
            metrics, _ = evaluate_tasks(tasks, encoders, built.data_source, built.context, device)
            seconds.append(time.perf_counter() - started)
            scores.append(headline_scores(metrics))
            seeds = {t.name: {k: v for k, v in t.params().items() if k in ("train_seed", "probe_seeds")} for t in tasks}
            print(f"  repetition {repetition + 1}/{repeats} ({seconds[-1]:.0f} s; seeds "
                  f"{ {k: v for k, v in seeds.items() if v} or 'the protocol’s'}): "
                  + ", ".join(f"{c} {100 * v:.1f}" for c, v in scores[-1].items()), flush=True)
    finally:
        encoders.close()
    return scores, seconds, recorded


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default=str(REPO / "experiments" / "ablation.yaml"))
    parser.add_argument("--variant", default="clip")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=5, help="downstream repetitions (k)")
    parser.add_argument("--run", default=None, help="a finished run folder with checkpoints/final.pt (skips pretraining)")
    parser.add_argument("--work", default="/tmp/vlpbench-bench-noise", help="results root for the run pretrained here")
    parser.add_argument("--reference", default=str(REPO / "results" / "reference" / "ablation"),
                        help="the published board's experiment folder (runs/*/metrics.json); '' for none")
    parser.add_argument("--fresh", default=None, help="runs of the same experiment made elsewhere (cross-machine differences)")
    parser.add_argument("--compare-only", action="store_true",
                        help="with --fresh: only compare its runs with the reference (no pretraining, no evaluation)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (the reference board's runs recorded 1; floating point depends on it)")
    parser.add_argument("--json", default=None, help="also write every figure to this JSON file")
    parser.add_argument("--floor", default=None, help="add this encoder's noise floor to this file for the board, e.g. "
                                                      "results/<experiment>/noise_floor.json (a column's floor is the "
                                                      "largest over the encoders measured; see vlpbench/board/noise.py)")
    args = parser.parse_args(argv)
    if args.compare_only:
        if not args.fresh or not args.reference:
            parser.error("--compare-only needs --fresh DIR and a --reference folder")
        return {"cross_machine": compare_only(Path(args.fresh), Path(args.reference))}
    if args.repeats < 2:
        parser.error("--repeats must be at least 2 (a standard deviation needs two repetitions)")

    import torch

    torch.set_num_threads(args.threads)
    run = pretrained_run(args)
    this = read_runs(run)
    scores, seconds, recorded = evaluate_repetitions(run, args.repeats)
    variant, seed = recorded["variant"], int(recorded["seed"])

    reference = read_runs(Path(args.reference)) if args.reference else []
    same_variant = [r for r in reference if r["variant"] == variant]
    same_seed = next((r for r in same_variant if r["seed"] == seed), None)
    rows = noise_table(scores, [r["scores"] for r in same_variant], this[0]["scores"] if this else None,
                       same_seed["scores"] if same_seed else None)
    reproduced = max((abs(100 * (scores[0][c] - this[0]["scores"][c])) for c in scores[0] if this and c in this[0]["scores"]),
                     default=math.nan)

    print(f"\nDownstream-only noise of {variant} seed {seed} ({run}), k = {args.repeats}, torch threads "
          f"{args.threads}, {sum(seconds) / len(seconds):.0f} s per evaluation; points ×100; "
          f"seed spread: {len(same_variant)} runs of {variant} in {args.reference or '—'}")
    print(format_noise_table(rows))
    print(f"\nrepetition 1 (the protocol's own seeds) against the run's own metrics.json: largest |difference| "
          f"{_num(reproduced, 3)} points (0 = the evaluation is exactly reproducible in one process and machine)")
    if same_seed is not None and this:
        print(f"run − ref., same seed: this run against {same_seed['path']} "
              f"({'same' if same_seed['run_hash'] == this[0]['run_hash'] else 'DIFFERENT'} run identity)")
    missed = [r["column"] for r in rows if r["meets"] is False]
    print(f"columns above the issue's noise target: {', '.join(missed) if missed else 'none'}")

    result: dict[str, Any] = {"variant": variant, "seed": seed, "run": str(run), "repeats": args.repeats,
                              "threads": args.threads, "eval_seconds": seconds, "repetitions": scores,
                              "rows": rows, "repetition0_vs_run_max_abs": reproduced, "missed": missed}
    if args.fresh:
        pairs = cross_machine(read_runs(Path(args.fresh)), reference)
        result["cross_machine"] = pairs
        result["cross_machine_columns"] = largest_differences(pairs)
        print(f"\nCross-machine: {args.fresh} − {args.reference}, {len(pairs)} runs of the same variant and seed "
              f"({sum(p['same_identity'] for p in pairs)} with the same run identity)")
        print(format_cross_machine(result["cross_machine_columns"]) if pairs else "no run of the fresh folder is in the reference")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str) + "\n")
    if args.floor:
        from vlpbench.board.noise import floor_document, merge_floor

        document = floor_document(rows, variant, seed, args.repeats, time.strftime("%Y-%m-%d"),
                                  "benchmarks/bench_noise.py " + " ".join(argv if argv is not None else sys.argv[1:]))
        floor_path = Path(args.floor)
        try:
            existing = json.loads(floor_path.read_text()) if floor_path.is_file() else None
        except (OSError, ValueError) as exc:
            raise SystemExit(f"--floor {floor_path}: the existing file is not a noise floor file ({exc}); move it "
                             "aside or give another path (the measurement above is printed, not lost).") from None
        merged = merge_floor(existing, document)
        floor_path.write_text(json.dumps(merged, indent=2) + "\n")
        print(f"noise floor for the board written to {args.floor} ({len(merged['measurements'])} encoder(s); "
              "each column the largest)")
    return result


if __name__ == "__main__":
    main()
