"""How many dense heads per fraction, and how to combine them (issue 18). A benchmark: it prints
figures and asserts nothing.

    .venv/bin/python benchmarks/bench_heads.py --run results/reference/ablation/runs/<run>
        [--repeats 5] [--heads 3] [--tasks segmentation] [--set segmentation.lr=3e-3 ...] [--threads 1] [--json FILE]

On one finished run's frozen encoders (``--run DIR``, as ``bench_noise.py --run``), every dense task
of the run's config (with ``--set TASK.KEY=VALUE`` overrides, YAML values) trains ``repeats × heads``
single heads per fraction: repetition r, head j from ``train_seed = r + 1000·j`` — exactly the head j
that the task's ``heads: k`` option trains in repetition r of ``bench_noise.py``. Per task and
fraction it prints, over the repetitions, the standard deviation (×100) of the score of one head,
of the mean of k heads (``head_selection: mean``; for detection the mean of the k mAPs, close to
the pooled mAP the task computes) and of the head with the lowest validation loss among k
(``best_val``), for k = 1 … heads; and the heads that *stall*: more than 10 points below the
fraction's median head. This is how the default ablation's ``heads`` were chosen (README,
*Downstream noise floor*).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_noise import frozen_run  # noqa: E402

DENSE = ("segmentation", "detection")
STALLED = 10.0  # points below the median head


def parse_overrides(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``TASK.KEY=VALUE`` (YAML value) → {task: {key: value}}."""
    import yaml

    overrides: dict[str, dict[str, Any]] = {}
    for item in items:
        key, _, value = item.partition("=")
        task, _, name = key.partition(".")
        if not name or task not in DENSE:
            raise SystemExit(f"--set {item!r}: expected TASK.KEY=VALUE with TASK one of {', '.join(DENSE)}")
        parsed = yaml.safe_load(value)
        if isinstance(parsed, str):  # YAML 1.1 reads 3e-3 as a string
            try:
                parsed = float(parsed)
            except ValueError:
                pass
        overrides.setdefault(task, {})[name] = parsed
    return overrides


def head_rows(run: Path, repeats: int, heads: int, overrides: dict[str, dict[str, Any]],
              only: Sequence[str] = ()) -> list[dict[str, Any]]:
    """One row per (repetition, head, task, fraction): the head's headline score ×100 and its best
    validation loss."""
    from vlpbench.config.schema import ComponentSpec
    from vlpbench.engine.scoring import evaluate_tasks

    config, built, device, encoders, _ = frozen_run(run)
    dense = [spec for spec in config.tasks if spec.name in DENSE and spec.name in (only or DENSE)]
    encoders.dense_min_stride = min(int(spec.params().get("min_stride", 4)) for spec in dense)
    rows = []
    try:
        for repetition in range(repeats):
            for head in range(heads):
                seed = repetition + 1000 * head
                specs = [ComponentSpec(name=spec.name, **{**spec.params(), **overrides.get(spec.name, {}),
                                                          "heads": 1, "head_selection": "mean", "train_seed": seed})
                         for spec in dense]
                started = time.perf_counter()
                metrics, _ = evaluate_tasks(specs, encoders, built.data_source, built.context, device)
                for spec in specs:
                    scores, details = metrics[spec.name]["scores"], metrics[spec.name]["details"]
                    for fraction, detail in details.items():
                        column = next(c for c in scores if c.endswith("@" + fraction) and not c.startswith("pooled"))
                        rows.append({"repetition": repetition, "head": head, "task": spec.name, "fraction": fraction,
                                     "score": 100 * scores[column], "val_loss": detail["best_val_loss"]})
                print(f"  repetition {repetition}, head {head} (train_seed {seed}): {time.perf_counter() - started:.0f} s",
                      flush=True)
    finally:
        encoders.close()
    return rows


def summarise(rows: Sequence[dict[str, Any]], heads: int) -> list[dict[str, Any]]:
    """Per task and fraction: std over repetitions of one head, mean-of-k and best-validation-of-k."""
    summary = []
    for task, fraction in dict.fromkeys((r["task"], r["fraction"]) for r in rows):
        mine = [r for r in rows if r["task"] == task and r["fraction"] == fraction]
        repetitions = sorted({r["repetition"] for r in mine})
        median = statistics.median(r["score"] for r in mine)
        line: dict[str, Any] = {"task": task, "fraction": fraction, "median": median,
                                "stalled": [round(r["score"], 1) for r in mine if r["score"] < median - STALLED],
                                "heads_trained": len(mine)}
        for k in range(1, heads + 1):
            groups = [[r for r in mine if r["repetition"] == rep and r["head"] < k] for rep in repetitions]
            means = [statistics.fmean(r["score"] for r in g) for g in groups]
            best = [min(g, key=lambda r: r["val_loss"])["score"] for g in groups]
            spread = (lambda v: statistics.stdev(v) if len(v) > 1 else float("nan"))
            line[f"mean{k}"], line[f"best{k}"] = (statistics.fmean(means), spread(means)), (statistics.fmean(best), spread(best))
        summary.append(line)
    return summary


def format_summary(summary: Sequence[dict[str, Any]], heads: int) -> str:
    ks = range(1, heads + 1)
    header = ["task", "fraction"] + [f"mean of {k}: mean ± std" for k in ks] + [f"best val of {k}" for k in ks[1:]] + ["stalled heads"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for s in summary:
        cells = [s["task"], s["fraction"]] + [f"{s[f'mean{k}'][0]:.1f} ± {s[f'mean{k}'][1]:.2f}" for k in ks]
        cells += [f"{s[f'best{k}'][0]:.1f} ± {s[f'best{k}'][1]:.2f}" for k in ks[1:]]
        cells.append(f"{len(s['stalled'])} of {s['heads_trained']} {s['stalled'] or ''}".strip())
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a finished run folder with checkpoints/final.pt")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--heads", type=int, default=3)
    parser.add_argument("--tasks", nargs="*", default=[], choices=DENSE, help="only these dense tasks")
    parser.add_argument("--set", action="append", default=[], metavar="TASK.KEY=VALUE")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (the reference runs used 1)")
    parser.add_argument("--json", type=Path, default=None, help="also write every head's row here")
    args = parser.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    rows = head_rows(args.run, args.repeats, args.heads, parse_overrides(args.set), args.tasks)
    summary = summarise(rows, args.heads)
    print(f"\nDense heads of {args.run} ({args.repeats} repetitions × {args.heads} heads; ×100):")
    print(format_summary(summary, args.heads))
    if args.json:
        args.json.write_text(json.dumps({"run": str(args.run), "rows": rows, "summary": summary}, indent=1))
    return summary


if __name__ == "__main__":
    main()
