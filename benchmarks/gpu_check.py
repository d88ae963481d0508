"""The GPU check (issue 14): one script that fits in a few minutes on one lent GPU.

It runs, on the device, through vlpbench's real code:

1. a one-rank process group (NCCL on a GPU, gloo on the CPU) around the real training loop
   (:func:`vlpbench.engine.pretrain.pretrain`): collectives on device tensors, DDP wrapping, the
   loader with workers and pinned memory, device-side augmentation;
2. bf16 steps at 224 px, batch 128, with a whole ResNet-50 + a BERT-base-sized text encoder and a
   ViT-B/16 + the same text encoder: samples/s of the vlpbench loop in its steady state (the steps
   after the first 4 of a 32-step epoch, loader and device augmentation included) against a bare
   forward/backward of the same encoders on the same device and the same batches (CLIP loss, AdamW),
   the ratio (target ≥ 0.9), the seconds the epoch spends outside those steps (the loader's start,
   the epoch-end checkpoint: paid once per epoch, about 1,700 steps on MIMIC-CXR), and peak GPU memory;
3. the frozen-feature time of the linear probe's features for a whole ResNet-50 at 224 px.

    python benchmarks/gpu_check.py            # on the GPU machine (prints figures, asserts nothing)
    python benchmarks/gpu_check.py --smoke    # the same code paths on the CPU at toy size (tests)

Weights are random (no downloads): speed and memory do not depend on them.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vlpbench.engine.callbacks import Callback  # noqa: E402  (light: no torch model code)

BERT_BASE = {"name": "bert", "layers": 12, "hidden": 768, "heads": 12, "intermediate": 3072, "vocab_size": 30522,
             "max_tokens": 112}
SMOKE_BERT = {"name": "bert", "layers": 1, "hidden": 32, "heads": 2, "vocab_size": 300, "max_tokens": 64}


def experiment(arch: str, image_size: int, batch: int, pairs: int, steps: int, text: dict, precision: str,
               workers: int | None) -> dict:
    encoder = {"name": "timm", "arch": arch}
    return {
        "data": {"name": "synthcxr", "image_size": image_size, "pretrain_size": pairs, "train_size": 256,
                 "val_size": 64, "test_size": 128},
        "model": {"image_encoder": encoder, "text_encoder": text, "embed_dim": 128},
        "objective": {"global": {"name": "infonce", "temperature": 0.07}},
        "pretrain": {"epochs": 1, "batch_size": batch, "lr": 1e-4, "precision": precision, "log_every": steps,
                     "workers": workers, "device": "auto"},
    }


class SteadySteps(Callback):
    """A training-loop callback that times the steps after the first ``skip`` of a call of
    :func:`~vlpbench.engine.pretrain.pretrain` up to its last: the loop's steady state (loader,
    host-to-device copy, augmentation, forward, backward, optimiser) without what an epoch pays once
    (starting the loader's workers, the epoch-end checkpoint). It synchronises the device twice, at
    the two ends of the window, never inside it."""

    def __init__(self, device, skip: int) -> None:
        self.device, self.skip = device, skip
        self.begin: tuple[float, int] | None = None
        self.end: tuple[float, int] | None = None

    def _now(self) -> float:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter()

    def on_step_end(self, state) -> None:
        if state.done == self.skip:
            self.begin = (self._now(), state.samples)
        if state.done == state.total:
            self.end = (self._now(), state.samples)

    def samples_per_second(self) -> float:
        if self.begin is None or self.end is None or self.end[0] <= self.begin[0]:
            return float("nan")
        return (self.end[1] - self.begin[1]) / (self.end[0] - self.begin[0])


def loop_throughput(config_dict: dict, device, folder: Path, skip: int) -> tuple[float, float, float, object]:
    """Samples/s of vlpbench's training loop in its steady state (steps after the first ``skip`` of
    an epoch, after one warm-up epoch of the same length), the seconds the epoch spent outside those
    steps (the loader's start, the first steps, the epoch-end checkpoint, the history) and peak
    memory."""
    import torch

    from vlpbench.config.schema import RunConfig
    from vlpbench.engine.model import build_run
    from vlpbench.engine.pretrain import pretrain
    from vlpbench.engine.rundir import RunDir
    from vlpbench.core.plugins import get_registry

    config = RunConfig.model_validate(config_dict)
    built = build_run(config, get_registry(), seed=0)
    pretrain(built.model, built.pretrain, config.pretrain, 0, RunDir(folder / "warmup"), device, progress=False)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    timer = SteadySteps(device, skip)
    started = time.perf_counter()
    result = pretrain(built.model, built.pretrain, config.pretrain, 1, RunDir(folder / "timed"), device,
                      progress=False, callbacks=[timer])
    if device.type == "cuda":
        torch.cuda.synchronize()
    whole = time.perf_counter() - started
    steady = timer.samples_per_second()
    fixed = whole - result.steps * config.pretrain.batch_size / steady
    memory = torch.cuda.max_memory_allocated() / 2 ** 30 if device.type == "cuda" else float("nan")
    return steady, fixed, memory, built


def bare_throughput(built, config_dict: dict, device, steps: int) -> float:
    """The same encoders, forward + CLIP loss + backward + AdamW on batches already on the device."""
    import torch
    import torch.nn.functional as F

    from vlpbench.data.pipeline import normalise

    model = built.model
    image, text = model.image_encoder, model.text_encoder
    params = [p for p in (*image.parameters(), *text.parameters()) if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    batch_size = config_dict["pretrain"]["batch_size"]
    batches = [b.to(device) for _, b in zip(range(2), built.pretrain.epoch_batches(0, 0, batch_size, augment=False))]
    dtype = torch.bfloat16 if config_dict["pretrain"]["precision"] == "bf16" else None

    def step(batch) -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            v = F.normalize(image(normalise(batch.images)).global_emb, dim=-1)
            t = F.normalize(text(batch.input_ids, batch.attention_mask, batch.sentence_index).global_emb, dim=-1)
            logits = v @ t.T / 0.07
            labels = torch.arange(len(v), device=device)
            loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for batch in batches:
        step(batch)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for index in range(steps):
        step(batches[index % len(batches)])
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch_size / (time.perf_counter() - started)


def feature_time(built, device, images: int) -> float:
    """Seconds to compute frozen global features of ``images`` test images (the linear probe's input)."""
    import torch

    from vlpbench.data.pipeline import to_model_images
    from vlpbench.tasks.base import frozen_global_features

    split = built.data_source.split("test")
    pixels = to_model_images(split.images[:images])
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    frozen_global_features(built.model.image_encoder, pixels, device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="toy sizes on the CPU (checks the code paths)")
    parser.add_argument("--steps", type=int, default=32, help="steps per epoch per encoder pair (the first 4 untimed)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("VLPBENCH_STORE_DIR", tempfile.mkdtemp(prefix="vlpbench-gpu-store-"))
    import torch
    import torch.distributed as dist

    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(0)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    lines = [f"device: {torch.cuda.get_device_name(0) if device.type == 'cuda' else 'cpu'}; torch {torch.__version__}; "
             f"process group: {backend}, one rank"]
    print(lines[-1], flush=True)
    rendezvous = tempfile.mkdtemp(prefix="vlpbench-gpu-rdv-")
    dist.init_process_group(backend, init_method=f"file://{rendezvous}/store", rank=0, world_size=1)
    try:
        steps = 3 if args.smoke else args.steps
        skip = 1 if args.smoke else 4  # steps left out of the timed window (the loader's first batches)
        size, batch = (64, 8) if args.smoke else (224, 128)
        text = SMOKE_BERT if args.smoke else BERT_BASE
        arches = ["resnet18"] if args.smoke else ["resnet50", "vit_base_patch16_224"]
        for arch in arches:
            config = experiment(arch, size, batch, batch * steps, steps, text, "bf16", None)
            with tempfile.TemporaryDirectory() as folder:
                loop, fixed, memory, built = loop_throughput(config, device, Path(folder), skip)
                bare = bare_throughput(built, config, device, steps)
                lines.append(f"{arch} + {'BERT-base' if not args.smoke else 'small BERT'}, bf16, {size} px, batch {batch}: "
                             f"vlpbench loop {loop:,.0f} samples/s (steps {skip + 1}–{steps} of an epoch), bare encoders "
                             f"{bare:,.0f} samples/s, ratio {loop / bare:.2f} (target ≥ 0.9), peak GPU memory "
                             f"{memory:.1f} GiB; the epoch's fixed costs (loader start, first {skip} steps, epoch-end "
                             f"checkpoint) {fixed:.1f} s")
                print(lines[-1], flush=True)
                if arch.startswith("resnet"):
                    count = 64 if args.smoke else 128
                    seconds = feature_time(built, device, count)
                    lines.append(f"{arch} frozen features: {count} test images in {seconds:.2f} s "
                                 f"({count / seconds:,.0f} images/s)")
                    print(lines[-1], flush=True)
    finally:
        dist.destroy_process_group()
    return lines


if __name__ == "__main__":
    main()
