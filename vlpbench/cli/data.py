"""``vlpbench data describe|verify|prepare`` and ``mining-quality``: the datasets and what the miners find in them."""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

from vlpbench.cli.options import bounded_int, set_values
from vlpbench.core.errors import ConfigError


def add_data(sub: Any) -> None:
    data = sub.add_parser("data", help="inspect datasets")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")
    describe = data_sub.add_parser("describe", help="generate SynthCXR and print prevalence, false-negative rates, examples")
    describe.add_argument("--split", default="pretrain", choices=["pretrain", "train", "val", "test"])
    describe.add_argument("--size", type=bounded_int("--size", 1, 200_000), default=4000)
    describe.add_argument("--seed", type=bounded_int("--seed", 0, 2**32 - 1), default=0)
    describe.add_argument("--image-size", type=bounded_int("--image-size", 32, 512), default=64)
    describe.add_argument("--difficulty", type=float, default=0.5)
    describe.add_argument("--normal-fraction", type=float, default=0.4)
    describe.add_argument("--examples", type=int, default=3, help="example reports to print")
    describe.set_defaults(handler=cmd_data_describe)

    verify = data_sub.add_parser("verify", help="check a local copy of a real dataset (files, columns, counts) and "
                                                "write its split manifest (IDs per split and fraction) with its SHA-256")
    verify.add_argument("name", help="dataset: mimic_cxr, chexpert, rsna_pneumonia, siim_pneumothorax, covidx, object_cxr")
    verify.add_argument("--root", required=True, help="folder of your local copy")
    verify.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="a dataset parameter, as in the experiment's dataset spec (repeatable), e.g. recipe=detection")
    verify.add_argument("--image-size", type=int, help="image size (does not change the manifest)")
    verify.add_argument("--out", help="manifest file (default: vlpbench-manifests/NAME.json)")
    verify.add_argument("--skip-counts", action="store_true",
                        help="do not compare counts with the full release's (a subset or a test copy)")
    verify.set_defaults(handler=cmd_data_verify)

    prepare = data_sub.add_parser("prepare", help="build the image stores of a dataset's splits ahead of time "
                                                  "(decoded and resized once; every run and rank maps them)")
    prepare.add_argument("name", help="dataset: synthcxr, mimic_cxr, chexpert, rsna_pneumonia, siim_pneumothorax, ...")
    prepare.add_argument("--root", help="folder of your local copy (real datasets)")
    prepare.add_argument("--set", action="append", metavar="KEY=VALUE",
                         help="a dataset parameter, as in the experiment's dataset spec (repeatable), e.g. workers=16")
    prepare.add_argument("--image-size", type=int, help="image size of the store (default: the dataset's)")
    prepare.add_argument("--split", action="append", choices=["pretrain", "train", "val", "test"],
                         help="only this split (repeatable; default: every split the dataset has)")
    prepare.add_argument("--verify", action="store_true", help="also check every store file's CRC-32")
    prepare.set_defaults(handler=cmd_data_prepare)


def add_mining_quality(sub: Any) -> None:
    quality = sub.add_parser("mining-quality", help="precision/recall of positive miners against SynthCXR's ground truth")
    quality.add_argument("--miner", action="append",
                         help="miner name or JSON spec (repeatable; default: every installed built-in or method miner)")
    quality.add_argument("--batches", type=int, default=50)
    quality.add_argument("--batch-size", type=int, default=64)
    quality.add_argument("--size", type=int, default=3000, help="SynthCXR pretraining split size")
    quality.add_argument("--seed", type=int, default=0)
    quality.add_argument("--laterality", action="store_true", help="truth also requires the same laterality")
    quality.set_defaults(handler=cmd_mining_quality)


def cmd_data_describe(args: argparse.Namespace) -> int:
    from vlpbench.data.synthcxr import FINDINGS, SynthCXRConfig, generate

    config = SynthCXRConfig(seed=args.seed, image_size=args.image_size, difficulty=args.difficulty,
                            normal_fraction=args.normal_fraction)
    from vlpbench.core.resources import check_fits, synthcxr_bytes

    check_fits(synthcxr_bytes(args.size, args.image_size), f"{args.size:,} studies at {args.image_size} px",
               "lower --size or --image-size")
    started = time.perf_counter()
    split = generate(args.split, args.size, config)
    elapsed = time.perf_counter() - started
    print(f"SynthCXR {args.split}: {len(split)} studies at {config.image_size} px in {elapsed:.2f} s "
          f"({len(split) / elapsed:,.0f} studies/s), difficulty {config.difficulty}")
    print(f"normal studies: {100 * (split.labels.sum(1) == 0).mean():.1f} %")
    print("prevalence: " + ", ".join(f"{name} {100 * v:.1f} %" for name, v in zip(FINDINGS, split.labels.mean(0))))
    print(f"batch false-negative rate (unpaired pairs with identical finding sets): "
          f"{100 * split.false_negative_rate():.1f} %; with laterality: "
          f"{100 * split.false_negative_rate(with_laterality=True):.1f} %")
    for index in range(min(args.examples, len(split))):
        print(f"example {index}: {split.reports[index]}")
    return 0


def cmd_data_verify(args: argparse.Namespace) -> int:

    from vlpbench.core.build import build_component
    from vlpbench.core.capabilities import Verifiable, offers
    from vlpbench.core.context import BuildContext
    from vlpbench.engine.files import write_json, write_text
    from vlpbench.core.plugins import get_registry

    registry = get_registry()
    spec = {"name": args.name, "root": args.root, **set_values(args.set)}
    if args.image_size:
        spec["image_size"] = args.image_size
    if not offers(registry.get("dataset", args.name).load(), Verifiable):
        raise ConfigError(f"dataset '{args.name}' is not read from local files, so there is nothing to verify; "
                          "`vlpbench plugins` lists the datasets (chexpert, mimic_cxr, rsna_pneumonia, ...).")
    source = build_component(registry, "dataset", spec, BuildContext())
    result = source.verify()
    if args.skip_counts:
        result.different = []
    print(f"{args.name} at {source.root}:")
    for what, count in result.counts.items():
        expected = source.expected().get(what)
        print(f"  {what}: {count}" + (f" (expected {expected})" if expected is not None else ""))
    out = Path(args.out or Path("vlpbench-manifests") / f"{args.name}.json")
    if result.missing:
        print(f"MISSING ({len(result.missing)}):")
        for line in result.missing[:20]:
            print(f"  {line}")
        if len(result.missing) > 20:
            missing_file = out.with_name(out.stem + ".missing.txt")
            write_text(missing_file, "\n".join(result.missing) + "\n")
            print(f"  ... and {len(result.missing) - 20} more, all listed in {missing_file}")
    for line in result.different:
        print(f"DIFFERENT: {line}")
    for line in result.problems:
        print(f"PROBLEM: {line}")
    if result.manifest is not None:
        sha = source.manifest_sha256()
        write_json(out, {"sha256": sha, "complete": result.ok, "counts": result.counts,
                         "expected_counts": source.expected(), **result.manifest})
        sizes = ", ".join(f"{name} {len(ids)}" for name, ids in result.manifest["splits"].items())
        fractions = ", ".join(f"{name} {len(ids)}" for name, ids in result.manifest["fractions"].items()
                              if isinstance(ids, list))
        print(f"manifest: {out} (IDs: {sizes}{'; ' + fractions if fractions else ''})")
        print(f"manifest sha256: {sha}  (pin it with `manifest_sha256: {sha}` in the dataset spec)")
    checked = ("the expected counts" if source.expected() and not args.skip_counts
               else "no expected counts compared")
    print(f"OK: every file is present, the tables have the published columns; {checked}." if result.ok else
          f"NOT OK: {len(result.missing)} missing, {len(result.different)} different, {len(result.problems)} problem(s).")
    return 0 if result.ok else 1


def cmd_data_prepare(args: argparse.Namespace) -> int:
    from vlpbench.core.build import build_component
    from vlpbench.core.context import BuildContext
    from vlpbench.data.prepare import prepare
    from vlpbench.core.plugins import get_registry

    spec = {"name": args.name, **({"root": args.root} if args.root else {}), **set_values(args.set)}
    if args.image_size:
        spec["image_size"] = args.image_size
    source = build_component(get_registry(), "dataset", spec, BuildContext())
    splits = args.split or (["pretrain", "train", "val", "test"] if args.name == "synthcxr" else
                            [s for s in ("pretrain", "train", "val", "test") if s in source.records()])
    print(f"{args.name}: image stores at {source.image_size} px")
    for prepared in prepare(source, splits, verify=args.verify):
        print(prepared.line())
    print("OK: every run, rank and restart maps these stores instead of decoding the images again"
          + (" (checksums verified)" if args.verify else "") + ".")
    return 0


DEFAULT_MINERS = ("identity", "oracle", "fane.adaptive_miner", "sista.fn_elimination")


def cmd_mining_quality(args: argparse.Namespace) -> int:
    from vlpbench.core.build import build_component
    from vlpbench.core.context import BuildContext
    from vlpbench.devkit.mining_quality import evaluate_miner
    from vlpbench.core.plugins import get_registry

    registry = get_registry()
    specs = [json.loads(m) if m.strip().startswith("{") else {"name": m} for m in (args.miner or DEFAULT_MINERS)]
    specs = [s for s in specs if args.miner or s["name"] in registry.names("positive_miner")]
    source = build_component(registry, "dataset", {"name": "synthcxr", "pretrain_size": args.size}, BuildContext())
    print(f"positive-pair quality on {args.batches} SynthCXR batches of {args.batch_size} "
          f"(truth: identical finding sets{' and laterality' if args.laterality else ''})")
    labels = [json.dumps(spec) if len(spec) > 1 else spec["name"] for spec in specs]
    width = max(len("miner"), *map(len, labels))
    print(f"| {'miner':<{width}} | flagged pairs | precision | recall |")
    print(f"|{'-' * (width + 2)}|---------------|-----------|--------|")
    for spec, label in zip(specs, labels):
        quality = evaluate_miner(spec, source, args.batches, args.batch_size, args.seed, args.laterality)
        print(f"| {label:<{width}} | {quality.flagged_pairs:>13} | {_percent(quality.precision):>9} | "
              f"{_percent(quality.recall):>6} |")
    print("precision '—': the miner flagged no pair (identity flags none by design); recall '—': no pair in these "
          "batches shares a finding set.")
    return 0


def _percent(value: float) -> str:
    """A share as ``12.3%``, or ``—`` where it is undefined (nothing to divide by), never ``nan%``."""
    return "—" if value is None or not math.isfinite(value) else f"{100 * value:.1f}%"
