"""Downstream evaluation at scale, measured (issue 19). A benchmark: it prints figures and asserts nothing.

    .venv/bin/python benchmarks/bench_eval.py [--sizes 1000 4000] [--train 64] [--val 32] [--quick]

For each test-split size, one fresh process evaluates every task (linear probe, segmentation,
detection, zero-shot, retrieval) on SynthCXR at 224 px with a whole ResNet-50 on the CPU, in one
evaluation as a run does (the tasks share frozen features). Before each task the process resets
its peak RSS (``/proc/self/clear_refs``), so each task's figure is the peak resident set (anonymous
and file-backed pages) while it ran; the wall time is the task's. The splits' image stores are
built beforehand by another process (as ``vlpbench data prepare`` does). The slope is
(peak at the largest size − peak at the smallest) / (difference in test images), per task.

``--quick``: one head epoch of at most 5 steps and one label fraction (the features, which are
what grows with the split, are computed in full). ``--mode``/``--budget`` set
``VLPBENCH_FEATURE_CACHE_MODE``/``VLPBENCH_FEATURE_CACHE`` for the probes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TASKS = ("linear_probe", "segmentation", "detection", "zero_shot", "retrieval")

PROBE = textwrap.dedent("""
    import json, sys, time
    sys.path.insert(0, sys.argv[1])
    args = json.loads(sys.argv[2])
    import torch
    torch.set_num_threads(args["threads"])
    from vlpbench.core.context import BuildContext
    from vlpbench.data.synthcxr_source import SynthCXRSource
    from vlpbench.models.image_timm import TimmImageEncoder
    from vlpbench.models.text_bert import BertTextEncoder
    from vlpbench.tasks.base import Encoders
    from vlpbench.tasks.detection import Detection
    from vlpbench.tasks.linear_probe import LinearProbe
    from vlpbench.tasks.retrieval import Retrieval
    from vlpbench.tasks.segmentation import Segmentation
    from vlpbench.tasks.zero_shot import ZeroShot

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
        return 0.0

    source = SynthCXRSource(SynthCXRSource.Params(image_size=224, pretrain_size=16, train_size=args["train"],
                                                  val_size=args["val"], test_size=args["test"]), None)
    torch.manual_seed(0)
    context = BuildContext(embed_dim=128, image_size=224, corpus=source.split("pretrain").reports)
    encoders = Encoders(TimmImageEncoder(TimmImageEncoder.Params(arch="resnet50"), context),
                        BertTextEncoder(BertTextEncoder.Params(layers=2, hidden=128, heads=2), context))
    quick = {"fractions": [1.0], "max_epochs": 1, "max_steps_per_epoch": 5} if args["quick"] else {}
    probe_quick = {"fractions": [1.0], "max_epochs": 3} if args["quick"] else {}
    tasks = {"linear_probe": LinearProbe(LinearProbe.Params(**probe_quick)),
             "segmentation": Segmentation(Segmentation.Params(**quick)),
             "detection": Detection(Detection.Params(**quick)),
             "zero_shot": ZeroShot(ZeroShot.Params()), "retrieval": Retrieval(Retrieval.Params())}
    for name in args["tasks"]:
        for split in ("train", "val", "test"):
            source.split(split)
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")  # reset the peak RSS to the current RSS
        before = status("VmRSS")
        started = time.perf_counter()
        tasks[name].evaluate(encoders, source, torch.device("cpu"))
        row = {"task": name, "test": args["test"], "seconds": time.perf_counter() - started,
               "peak_rss_mib": status("VmHWM"), "rss_before_mib": before,
               "placements": [d[2] for d in encoders.cache.decisions]}
        print("ROW " + json.dumps(row), flush=True)
    encoders.close()
""")

BUILD = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[1])
    from vlpbench.data.synthcxr_source import SynthCXRSource
    source = SynthCXRSource(SynthCXRSource.Params(image_size=224, pretrain_size=16, train_size=int(sys.argv[2]),
                                                  val_size=int(sys.argv[3]), test_size=int(sys.argv[4])), None)
    for split in ("pretrain", "train", "val", "test"):
        source.split(split)
""")


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000], help="test-split sizes")
    parser.add_argument("--train", type=int, default=64)
    parser.add_argument("--val", type=int, default=32)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="one short head epoch, one fraction")
    parser.add_argument("--mode", default=None, help="VLPBENCH_FEATURE_CACHE_MODE for the probes")
    parser.add_argument("--budget", default=None, help="VLPBENCH_FEATURE_CACHE for the probes (e.g. 2GiB)")
    args = parser.parse_args(argv)
    env = dict(os.environ)
    if args.mode:
        env["VLPBENCH_FEATURE_CACHE_MODE"] = args.mode
    if args.budget:
        env["VLPBENCH_FEATURE_CACHE"] = args.budget
    rows: list[dict] = []
    for size in args.sizes:
        subprocess.run([sys.executable, "-c", BUILD, str(REPO), str(args.train), str(args.val), str(size)],
                       check=True, env=env)
        probe = {"train": args.train, "val": args.val, "test": size, "quick": args.quick, "tasks": args.tasks,
                 "threads": args.threads}
        done = subprocess.run([sys.executable, "-c", PROBE, str(REPO), json.dumps(probe)], env=env,
                              capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"the probe at {size} test images failed:\n{done.stderr[-3000:]}")
        for line in done.stdout.splitlines():
            if line.startswith("ROW "):
                rows.append(json.loads(line[4:]))
                row = rows[-1]
                print(f"{row['task']:<13} test {size:>6,}  peak RSS {row['peak_rss_mib']:>8,.0f} MiB  "
                      f"wall {row['seconds']:>7.1f} s  dense maps: {', '.join(row['placements']) or '-'}", flush=True)
    low, high = min(args.sizes), max(args.sizes)
    if high > low:
        print(f"\nslope of peak RSS per test image ({low:,} → {high:,} images, 224 px, whole ResNet-50):")
        for task in args.tasks:
            a = next(r for r in rows if r["task"] == task and r["test"] == low)
            b = next(r for r in rows if r["task"] == task and r["test"] == high)
            slope = (b["peak_rss_mib"] - a["peak_rss_mib"]) / (high - low)
            time_slope = (b["seconds"] - a["seconds"]) / (high - low) * 1000
            print(f"  {task:<13} {slope:+.4f} MiB/image   {time_slope:6.1f} ms/image")
    return rows


if __name__ == "__main__":
    main()
