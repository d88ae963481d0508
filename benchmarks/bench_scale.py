"""Pretraining at scale, measured (issue 14). A benchmark: it prints figures and asserts nothing.

    .venv/bin/python benchmarks/bench_scale.py [--sizes 1000 4000 16000] [--jpegs 200] [--baseline-src DIR]

1. Anonymous peak RSS of a 224 px pretraining run at several SynthCXR sizes and its slope per pair
   (each size in a fresh process; its store is built beforehand by another process, as
   ``vlpbench data prepare`` does, so the figure is the training process's own memory).
2. Image store build rate on MIMIC-sized JPEGs (2,500 × 3,000 grayscale) the benchmark writes.
3. CPU time per 128-image batch spent in the training process at 224 px: gathering with two
   DataLoader workers (what the process waits for and copies) against the former in-process
   float gather + CPU augmentation.
4. Step time of the 64 px ablation configuration (clip), and with ``--baseline-src`` (a checkout
   of an earlier commit) the same measured with that code.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

RSS_PROBE = textwrap.dedent("""
    import json, sys, threading, time
    sys.path.insert(0, sys.argv[3])
    size, steps = int(sys.argv[1]), int(sys.argv[2])
    peak = {"anon": 0}
    def anon_kib():
        for line in open("/proc/self/status"):
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
        return 0
    def sample():
        while True:
            peak["anon"] = max(peak["anon"], anon_kib())
            time.sleep(0.02)
    threading.Thread(target=sample, daemon=True).start()
    import tempfile, torch
    from vlpbench.config.schema import RunConfig
    from vlpbench.engine.model import build_run
    from vlpbench.engine.pretrain import pretrain
    from vlpbench.engine.rundir import RunDir
    from vlpbench.core.plugins import get_registry
    torch.set_num_threads(2)
    config = RunConfig.model_validate({
        "data": {"name": "synthcxr", "image_size": 224, "pretrain_size": size, "train_size": 16, "val_size": 16,
                 "test_size": 16},
        "model": {"image_encoder": {"name": "timm", "arch": "resnet18"},
                  "text_encoder": {"name": "bert", "layers": 2, "hidden": 128, "heads": 2}, "embed_dim": 128},
        "pretrain": {"epochs": 1, "batch_size": 32, "lr": 1e-4, "log_every": 1}})
    built = build_run(config, get_registry(), seed=0)
    from vlpbench.engine.callbacks import Interrupt, StopAfter
    config.pretrain.checkpoint_every = steps  # the real loop for a few steps (a 16k-pair epoch at 224 px takes hours on a CPU)
    try:
        pretrain(built.model, built.pretrain, config.pretrain, 0, RunDir(__import__("pathlib").Path(tempfile.mkdtemp())),
                 torch.device("cpu"), progress=False, callbacks=[StopAfter(step=steps)])
    except Interrupt:
        pass
    peak["anon"] = max(peak["anon"], anon_kib())
    print(json.dumps({"size": size, "anon_peak_mib": peak["anon"] / 1024}))
""")


def rss_figures(sizes: list[int], steps: int, store: str) -> None:
    env = {**os.environ, "VLPBENCH_STORE_DIR": store, "HF_HUB_OFFLINE": "1"}
    results = []
    for size in sizes:
        subprocess.run([sys.executable, "-m", "vlpbench", "data", "prepare", "synthcxr", "--image-size", "224",
                        "--set", f"pretrain_size={size}", "--set", "train_size=16", "--set", "val_size=16",
                        "--set", "test_size=16", "--split", "pretrain"], check=True, env=env, capture_output=True)
        out = subprocess.run([sys.executable, "-c", RSS_PROBE, str(size), str(steps), str(REPO)], check=True, env=env,
                             capture_output=True, text=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"  {size:>6,} pairs: anonymous peak RSS {results[-1]['anon_peak_mib']:,.0f} MiB", flush=True)
    for first, last in zip(results, results[1:]):
        slope = (last["anon_peak_mib"] - first["anon_peak_mib"]) / (last["size"] - first["size"])
        print(f"  slope {first['size']:,}→{last['size']:,}: {slope:.4f} MiB per pair (target ≤ 0.01; 0.63 before)")


def write_jpegs(folder: Path, count: int) -> list[Path]:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    base = (rng.random((300, 250)) * 255).astype(np.uint8)
    paths = []
    for index in range(count):
        big = np.asarray(Image.fromarray(np.roll(base, index, 0)).resize((2500, 3000), Image.BILINEAR))
        noisy = np.clip(big.astype(np.int16) + rng.integers(-8, 8, big.shape), 0, 255).astype(np.uint8)
        path = folder / f"{index:05d}.jpg"
        Image.fromarray(noisy).save(path, quality=95)
        paths.append(path)
    return paths


def store_rate(count: int, workers: int) -> None:
    import numpy as np

    from vlpbench.data.real.decoding import decode_record
    from vlpbench.data.real.common import Record
    from vlpbench.data.store import open_or_build

    with tempfile.TemporaryDirectory() as folder:
        paths = write_jpegs(Path(folder), count)
        megabytes = sum(p.stat().st_size for p in paths) / count / 2 ** 20
        records = [Record(id=str(i), image=p, source="bench", lines=(i + 2,), labels=np.zeros(1, np.uint8))
                   for i, p in enumerate(paths)]
        for label, exact in (("draft decode (stores)", False), ("full decode (masks/boxes)", True)):
            import functools
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            if exact:
                records = [Record(id=r.id, image=r.image, source=r.source, lines=r.lines, labels=r.labels,
                                  boxes=[(0.0, 0.0, 10.0, 10.0)]) for r in records]
            decode = functools.partial(decode_record, size=224, has_masks=False)

            def build(writer) -> None:
                with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
                    for image, _, _ in pool.map(decode, records, chunksize=8):
                        writer.append(image[None])

            decode(records[0])  # imports and first-call costs out of the per-image figure
            cpu = time.process_time()
            for record in records[:10]:
                decode(record)
            per_core = 10 / (time.process_time() - cpu)
            started = time.perf_counter()
            open_or_build("bench", {"exact": exact}, len(records), (224, 224), build, root=Path(folder) / "store")
            rate = count / (time.perf_counter() - started)
            print(f"  {label}: {per_core:,.1f} images/s per core (CPU time of the decode, {megabytes:.1f} MB JPEGs, "
                  f"2,500×3,000 → 224 px; 217k images on 16 cores ≈ {217_000 / (per_core * 16) / 60:,.1f} min); "
                  f"the whole build with {workers} processes, pool start-up included: {rate:,.1f} images/s")


def batch_cpu_time(store: str) -> None:
    import torch

    from vlpbench.config.schema import RunConfig
    from vlpbench.data.pipeline import light_augment, normalise
    from vlpbench.engine.model import build_run
    from vlpbench.core.plugins import get_registry

    os.environ["VLPBENCH_STORE_DIR"] = store
    config = RunConfig.model_validate({
        "data": {"name": "synthcxr", "image_size": 224, "pretrain_size": 1024, "train_size": 16, "val_size": 16,
                 "test_size": 16},
        "model": {"image_encoder": {"name": "timm", "arch": "resnet18"},
                  "text_encoder": {"name": "bert", "layers": 1, "hidden": 32, "heads": 2, "vocab_size": 300}}})
    data = build_run(config, get_registry(), seed=0).pretrain
    batches = data.epoch_batches(0, 0, 128, augment=True, workers=2, prefetch=4)
    next(batches)
    time.sleep(2.0)  # let the workers fill their prefetch queue, as during a GPU step
    spent = []
    for _ in range(6):
        started = time.thread_time()
        batch = next(batches)
        batch = batch.to(torch.device("cpu"))
        spent.append(time.thread_time() - started)
        time.sleep(0.3)  # the device step the workers overlap with
    now = sorted(spent)[len(spent) // 2] * 1000
    images = torch.from_numpy(data.images[:128].copy()).unsqueeze(1)
    started = time.thread_time()
    for _ in range(3):
        light_augment(normalise(images), batch.extras["augment"])  # what the training process did per batch
    before = (time.thread_time() - started) / 3 * 1000
    print(f"  training process CPU per 128-image batch at 224 px: {now:.1f} ms with 2 workers (target ≤ 5 ms); "
          f"the former in-process float gather + CPU augmentation: {before:.0f} ms")


STEP_PROBE = textwrap.dedent("""
    import json, sys, tempfile, pathlib
    sys.path.insert(0, sys.argv[1])
    import torch
    from vlpbench.config.loader import load_experiment
    from vlpbench.engine.model import build_run
    from vlpbench.engine.pretrain import pretrain
    from vlpbench.engine.rundir import RunDir
    from vlpbench.core.plugins import get_registry
    torch.set_num_threads(2)
    spec = load_experiment(pathlib.Path(sys.argv[2])).runs[0]
    config = spec.run_config()
    config.pretrain.epochs = 1
    built = build_run(config, get_registry(), seed=0)
    result = pretrain(built.model, built.pretrain, config.pretrain, 0, RunDir(pathlib.Path(tempfile.mkdtemp())),
                      torch.device("cpu"), progress=False)
    print(json.dumps({"step_ms": 1000 * result.wall_seconds / max(1, result.steps)}))
""")


def step_time(source: Path, label: str) -> None:
    experiment = Path(tempfile.mkdtemp()) / "clip.yaml"
    text = (REPO / "experiments" / "ablation.yaml").read_text()
    experiment.write_text(text.split("tasks:")[0] + "tasks: []\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(source)}
    out = subprocess.run([sys.executable, "-c", STEP_PROBE, str(source), str(experiment)], env=env,
                         capture_output=True, text=True)
    if out.returncode:
        print(f"  {label}: failed ({out.stderr.strip().splitlines()[-1] if out.stderr else out.returncode})")
        return
    print(f"  {label}: {json.loads(out.stdout.strip().splitlines()[-1])['step_ms']:.0f} ms per step "
          "(64 px ablation, clip, batch 64, one epoch)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000, 16000])
    parser.add_argument("--steps", type=int, default=3, help="training steps per RSS probe")
    parser.add_argument("--jpegs", type=int, default=120)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--baseline-src", type=Path, help="checkout of an earlier commit, for the step-time comparison")
    args = parser.parse_args()
    store = tempfile.mkdtemp(prefix="vlpbench-bench-store-")
    print("1. anonymous peak RSS of a 224 px pretraining run (ResNet-18, batch 32):", flush=True)
    rss_figures(args.sizes, args.steps, store)
    print("2. image store build:", flush=True)
    store_rate(args.jpegs, args.workers)
    print("3. data path in the training process:", flush=True)
    batch_cpu_time(store)
    print("4. step time of the 64 px ablation configuration:", flush=True)
    step_time(REPO, "this checkout")
    if args.baseline_src:
        step_time(args.baseline_src, f"baseline {args.baseline_src}")


if __name__ == "__main__":
    main()
