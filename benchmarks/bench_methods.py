"""Prints the method plugins' figures (issue 3). A benchmark, not a test: it asserts nothing.

1. Each objective's training step time (forward + backward + AdamW, quickstart encoders, batch 64
   of SynthCXR) as a ratio to the bare InfoNCE step with the same encoders. Components that add
   no network of their own (miners, weightings, losses, heads) are listed apart from those that do
   (a frozen report encoder is precomputed; the CM-MIR decoder).
2. For TCSAP, the CM-CGNS cross-attention and SISTA's token alignment: the speed-up of the
   vectorised head over the per-report loop written as the official code writes it, and the
   largest absolute difference between the two (forward + backward).

    .venv/bin/python benchmarks/bench_methods.py [--steps 6] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

from vlpbench.config.schema import RunConfig
from vlpbench.core.context import BuildContext
from vlpbench.engine.model import build_run
from vlpbench.core.plugins import get_registry
from vlpbench.devkit.testing import feature_inputs

BASE = {
    "data": {"name": "synthcxr", "image_size": 64, "pretrain_size": 1024},
    "model": {"image_encoder": {"name": "timm", "arch": "resnet18"},
              "text_encoder": {"name": "bert", "layers": 2, "hidden": 128}, "embed_dim": 128},
    "objective": {"global": {"name": "infonce", "temperature": 0.07}},
    "pretrain": {"batch_size": 64, "epochs": 1},
}
OBJECTIVES = {  # label -> (objective overrides, adds a network of its own)
    "fane.adaptive_miner": ({"positive_miner": {"name": "fane.adaptive_miner"}}, False),
    "sista.fn_elimination": ({"positive_miner": {"name": "sista.fn_elimination"}}, False),
    "fane.sigmoid_mp": ({"global": {"name": "fane.sigmoid_mp"}}, False),
    "fane.hard_negative": ({"negative_weighting": [{"name": "fane.hard_negative"}]}, False),
    "cmcgns.cluster_negatives": ({"negative_weighting": [{"name": "cmcgns.cluster_negatives"}]}, False),
    "fane.tcsap": ({"local_heads": [{"name": "fane.tcsap"}]}, False),
    "sista.sparse_token": ({"local_heads": [{"name": "sista.sparse_token"}]}, False),
    "cmcgns.cross_attention": ({"local_heads": [{"name": "cmcgns.cross_attention"}]}, False),
    "cmcgns.mir (decoder)": ({"auxiliaries": [{"name": "cmcgns.mir"}]}, True),
    "preset fane": ({"positive_miner": {"name": "fane.adaptive_miner"}, "global": {"name": "fane.sigmoid_mp"},
                     "negative_weighting": [{"name": "fane.hard_negative"}], "local_heads": [{"name": "fane.tcsap"}]}, False),
    "preset sista": ({"positive_miner": {"name": "sista.fn_elimination"}, "local_heads": [{"name": "sista.sparse_token"}]}, False),
    "preset cmcgns (with CM-MIR)": ({"global": {"name": "infonce", "temperature": 0.1},
                                     "local_heads": [{"name": "cmcgns.cross_attention"}],
                                     "auxiliaries": [{"name": "cmcgns.mir"}]}, True),
}


def step_time(objective: dict, steps: int, batch_size: int) -> float:
    config = copy.deepcopy(BASE)
    config["objective"].update(objective)
    config["pretrain"]["batch_size"] = batch_size
    run_config = RunConfig.model_validate(config)
    built = build_run(run_config, get_registry(), seed=0)
    model = built.model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    timings = []
    for index, batch in zip(range(steps + 2), built.pretrain.epoch_batches(0, 0, batch_size, augment=True)):
        start = time.perf_counter()
        out = model(batch, progress=0.9)
        optimizer.zero_grad()
        out.total.backward()
        optimizer.step()
        if index >= 2:
            timings.append(time.perf_counter() - start)
    return sorted(timings)[len(timings) // 2]


def heads_vs_loops(batch_size: int, repeats: int = 5) -> None:
    from vlpbench_cmcgns.cross_attention import BidirectionalCrossAttentionHead
    from vlpbench_cmcgns.loop_reference import cross_attention_loop
    from vlpbench_fane.loop_reference import tcsap_loop
    from vlpbench_fane.tcsap import TCSAP
    from vlpbench_sista.loop_reference import sta_loop
    from vlpbench_sista.sta import SparseTokenAlignment

    context = BuildContext(embed_dim=128)
    generator = torch.Generator().manual_seed(0)
    sentences = torch.randint(2, 8, (batch_size,), generator=generator).tolist()
    words = torch.randint(10, 40, (batch_size,), generator=generator).tolist()
    inputs = feature_inputs(batch_size=batch_size, dim=128, grid=(8, 8), sentences=torch.randn(batch_size, 7, 128),
                            sentence_counts=sentences, words=torch.randn(batch_size, 40, 128), word_counts=words,
                            image_global=torch.randn(batch_size, 128), text_global=torch.randn(batch_size, 128),
                            patches=torch.randn(batch_size, 64, 128))
    for features in (inputs.text.sentence_emb, inputs.text.word_emb, inputs.image.patch_emb):
        features.requires_grad_(True)  # a head without parameters still back-propagates into its inputs
    torch.manual_seed(0)
    heads = {
        "fane.tcsap": (TCSAP(TCSAP.Params(), context), tcsap_loop),
        "cmcgns.cross_attention": (BidirectionalCrossAttentionHead(
            BidirectionalCrossAttentionHead.Params(cluster_negatives=False), context), cross_attention_loop),
        "sista.sparse_token": (SparseTokenAlignment(SparseTokenAlignment.Params(), context), sta_loop),
    }
    print(f"\nlocal heads vs their per-report loops (batch {batch_size}, 64 patches, 2–7 sentences, 10–39 words; forward + backward)")
    print("| head | vectorised ms | loop ms | speed-up | max abs difference |")
    print("|---|---|---|---|---|")
    for name, (head, loop) in heads.items():
        def timed(compute) -> tuple[float, dict]:
            best, out = float("inf"), {}
            for _ in range(repeats):
                head.zero_grad()
                start = time.perf_counter()
                out = compute(head, inputs)
                sum(out.values()).backward()
                best = min(best, time.perf_counter() - start)
            return best, out
        fast_t, fast = timed(lambda h, i: h(i))
        slow_t, slow = timed(loop)
        difference = max(abs(float(fast[k].detach()) - float(slow[k].detach())) for k in slow)
        print(f"| {name} | {1000 * fast_t:.1f} | {1000 * slow_t:.1f} | {slow_t / fast_t:.1f}× | {difference:.2e} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    torch.manual_seed(0)
    bare = step_time({}, args.steps, args.batch_size)
    print(f"training step time vs bare InfoNCE (quickstart encoders, batch {args.batch_size}, "
          f"{torch.get_num_threads()} threads; median of {args.steps} steps)")
    print("| objective | ms/step | ratio | adds a network |")
    print("|---|---|---|---|")
    print(f"| infonce (bare) | {1000 * bare:.0f} | 1.00 | no |")
    for label, (objective, network) in OBJECTIVES.items():
        seconds = step_time(objective, args.steps, args.batch_size)
        print(f"| {label} | {1000 * seconds:.0f} | {seconds / bare:.2f} | {'yes' if network else 'no'} |")
    heads_vs_loops(args.batch_size)


if __name__ == "__main__":
    main()
