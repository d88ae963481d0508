"""Prints the core engine's figures (issue 2): CLI start-up, data generation, training speed,
quickstart wall time. A benchmark, not a test: it prints numbers and asserts nothing.

    .venv/bin/python benchmarks/bench_core.py [--skip-quickstart]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VLPBENCH = [sys.executable, "-m", "vlpbench"]


def wall(cmd: list[str], repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skip-quickstart", action="store_true")
    args = parser.parse_args()

    print(f"vlpbench --help        : {wall(VLPBENCH + ['--help']):.3f} s (target < 0.5 s)")
    print(f"vlpbench plugins       : {wall(VLPBENCH + ['plugins']):.3f} s (target < 1 s)")

    from vlpbench.data.synthcxr import SynthCXRConfig, generate

    start = time.perf_counter()
    generate("pretrain", 10_000, SynthCXRConfig(image_size=64))
    elapsed = time.perf_counter() - start
    print(f"SynthCXR generation    : {10_000 / elapsed:,.0f} samples/s (10,000 at 64 px in {elapsed:.2f} s)")

    import torch

    from vlpbench.config.loader import load_experiment
    from vlpbench.engine.model import build_run
    from vlpbench.core.plugins import get_registry

    spec = load_experiment(REPO / "experiments" / "quickstart.yaml").runs[0]
    config = spec.run_config()
    built = build_run(config, get_registry(), seed=0)
    model, data = built.model, built.pretrain
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batches = data.epoch_batches(0, 0, config.pretrain.batch_size, augment=True)
    timings = []
    for index, batch in zip(range(8), batches):
        start = time.perf_counter()
        out = model(batch, progress=0.5)
        optimizer.zero_grad()
        out.total.backward()
        optimizer.step()
        if index >= 2:
            timings.append(time.perf_counter() - start)
    per_step = sum(timings) / len(timings)
    print(f"pretraining throughput : {config.pretrain.batch_size / per_step:,.0f} samples/s "
          f"(batch {config.pretrain.batch_size}, {per_step * 1000:.0f} ms/step, {torch.get_num_threads()} threads)")

    if not args.skip_quickstart:
        with tempfile.TemporaryDirectory() as results:
            start = time.perf_counter()
            subprocess.run(VLPBENCH + ["run", str(REPO / "experiments" / "quickstart.yaml"), "--results", results, "--quiet"],
                           check=True, capture_output=True)
            print(f"quickstart wall time   : {time.perf_counter() - start:.0f} s (target about 180 s)")


if __name__ == "__main__":
    main()
