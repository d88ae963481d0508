"""The ``vlpbench`` command line.

Start-up stays light: only argparse is imported here, and each command imports what it needs
(torch, pandas, ...) when it runs, so ``vlpbench --help`` and ``vlpbench plugins`` are fast.
User mistakes (:class:`~vlpbench.errors.UserError`) print one paragraph and exit 2; anything
else is a bug and shows its traceback (exit 1).
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

from vlpbench import __version__
from vlpbench.errors import ConfigError, EnvironmentProblem, Terminated, UserError, environment_message


def _seeds(text: str) -> list[int]:
    try:
        return [int(s) for s in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds takes integers such as '0' or '0,1,2', got '{text}'") from None


def _results_root(text: str) -> Path:
    """``--results``: a folder (made when missing); a file there is refused with the fix."""
    root = Path(text)
    if root.exists() and not root.is_dir():
        raise ConfigError(f"--results '{root}' is a file, not a folder; give a folder (default: results/).")
    return root


def _bounded_int(name: str, low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer in [low, high] (sizes that would exhaust memory are refused)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} takes an integer, got '{text}'") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{name} takes an integer from {low:,} to {high:,}, got {value:,}")
        return value
    return parse


class _TerminateToInterrupt:
    """While running: SIGTERM raises :class:`~vlpbench.errors.Terminated`, so the current run is marked
    ``interrupted`` (not left ``running``) and the command exits 143."""

    def __enter__(self) -> None:
        import signal
        import threading

        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, self._raise)

    @staticmethod
    def _raise(signum: int, frame: object) -> None:
        from vlpbench.errors import Terminated

        raise Terminated("SIGTERM")

    def __exit__(self, *exc: object) -> None:
        import signal

        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)


def cmd_run(args: argparse.Namespace) -> int:
    from vlpbench.engine.distributed import process_group

    _results_root(args.results)
    with _TerminateToInterrupt(), process_group() as world:  # several processes under torchrun (or Slurm): DDP
        return _run_experiment(args, main=world.rank == 0)


def _run_experiment(args: argparse.Namespace, main: bool) -> int:
    from vlpbench import api
    from vlpbench.engine.rundir import experiment_dir

    experiment = api.load(args.file, seeds=args.seeds, variants=args.variant, settings=_settings(args))
    root = Path(args.results)
    if args.dry_run:
        from vlpbench.engine.plan import format_plan

        if main:
            print(format_plan(experiment, api.plan(experiment, root, rerun_stale=args.rerun_stale,
                                                   reuse_pretraining=not args.no_reuse)))
        return 0
    if args.launcher != "local":  # a launcher component (slurm, or a plugin's): it submits and returns
        from vlpbench.launchers import launcher

        launcher(args.launcher).launch(experiment, root, rerun_stale=args.rerun_stale)
        return 0
    say = print if main else (lambda *a, **k: None)
    world = experiment.runs[0].world_size if experiment.runs else 1
    say(f"experiment '{experiment.name}': {len(experiment.runs)} run(s) "
        f"({len(experiment.variants)} variant(s) × seeds {sorted({r.seed for r in experiment.runs})})"
        + (f" on {world} processes" if world > 1 else ""))
    if main:
        from vlpbench.board.current import superseded_warnings

        for line in superseded_warnings(experiment, experiment_dir(root, experiment.name)):
            print(line)
    report_to = _report_to(args, experiment)
    result = api.run(experiment, root, rerun_stale=args.rerun_stale, progress=not args.quiet,
                     reuse_pretraining=not args.no_reuse, report_to=report_to)
    outcome = result.outcome
    if not main:
        return 2 if outcome.failed else 0
    print()
    print(result.board)
    print(f"written: {experiment_dir(root, experiment.name)}/leaderboard.{{md,csv,tex,html}} and leaderboard_full.md")
    if outcome.failed:
        print(f"{len(outcome.failed)} run(s) failed or are corrupt; their status.json (and run.log) or the message "
              "above says why. The other results are kept.", file=sys.stderr)
        return 2
    return 0


def _experiment_file(text: str) -> Path:
    """An experiment argument: a file, or the name of an experiment vlpbench ships (``quickstart``)."""
    from vlpbench.shipped import resolve_experiment

    return resolve_experiment(text)


def cmd_init(args: argparse.Namespace) -> int:
    from vlpbench.shipped import init_experiment, shipped_experiments

    if args.list or not args.name:
        import yaml

        for name, path in shipped_experiments().items():
            data = yaml.safe_load(path.read_text())
            about = str(data.get("description", "")) if isinstance(data, dict) else ""
            print(f"  {name:<20} {about[:110] + ('…' if len(about) > 110 else '')}")
        return 0
    target = init_experiment(args.name, Path(args.out) if args.out else None, force=args.force)
    print(f"wrote {target}: edit it, check it with `vlpbench validate {target}`, run it with `vlpbench run {target}`.")
    return 0


def _report_to(args: argparse.Namespace, experiment: Any) -> list[str]:
    """The trackers of this command: ``--report-to`` (``none`` for none) over the file's ``report_to``."""
    from vlpbench.engine.tracking import check_backends

    if args.report_to is None:
        names = list(experiment.file.report_to)
    else:
        names = [n.strip() for n in args.report_to.split(",") if n.strip() and n.strip() != "none"]
    check_backends(names)
    return names


def cmd_sweep(args: argparse.Namespace) -> int:
    from vlpbench.sweep import load_sweep

    args.file = _experiment_file(args.file)
    plan = load_sweep(args.file, args.variant, settings=_settings(args))
    root = Path(args.results)
    if args.launcher != "local":
        from vlpbench.launchers import launcher

        if args.address:
            raise UserError(f"--address joins a running Ray cluster from here; with --launcher {args.launcher} the "
                            "sweep starts its own cluster where the launcher puts it. Use one or the other.")
        launcher(args.launcher, sweep=True).launch_sweep(plan, root, resume=args.resume)
        return 0
    from vlpbench.sweep import run_sweep

    outcome = run_sweep(plan, root, resume=args.resume, num_cpus=args.num_cpus, address=args.address)
    if outcome.interrupted:
        return 130
    return 0 if outcome.best is not None else 2


def cmd_status(args: argparse.Namespace) -> int:
    from vlpbench.launchers.jobs import show_status

    return show_status(Path(args.results), echo=print)


def cmd_eval(args: argparse.Namespace) -> int:
    from vlpbench import api
    from vlpbench.engine.rundir import experiment_dir
    from vlpbench.leaderboard import write_leaderboard

    root = _results_root(args.results)

    key_map = {k: v for k, v in {"format": args.format, "prefix": args.prefix, "strip": args.strip}.items() if v}
    run = api.evaluate(args.checkpoint, args.experiment, args.label, root, arch=args.arch, variant=args.variant,
                       key_map=key_map or None, separate_row=args.separate_row)
    print(f"evaluated '{args.checkpoint}' as '{args.label}' -> {run.path}")
    folder = run.path.parent.parent
    print()
    print(write_leaderboard(experiment_dir(root, folder.name)))
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from vlpbench.config.loader import load_experiment

    settings = _settings(args)
    args.file = _experiment_file(args.file)
    experiment = load_experiment(args.file, settings=settings)
    if settings:
        print("with --set " + ", ".join(f"{k}={v!r}" for k, v in settings.items()))
    print(f"{args.file}: OK — experiment '{experiment.name}', {len(experiment.variants)} variant(s), "
          f"{len(experiment.runs)} run(s): {', '.join(experiment.variants)}")
    from vlpbench.config.floor import floor_lines

    for line in floor_lines(experiment.runs):
        print(line)
    if experiment.file.sweep is not None:
        from vlpbench.sweep import load_sweep

        sweep = experiment.file.sweep
        for variant in experiment.variants if len(experiment.variants) > 1 else [None]:
            load_sweep(args.file, variant, settings=settings)
        print(f"sweep: OK — {len(sweep.space)} key(s) searched, metric {sweep.metric} ({sweep.mode}, validation "
              f"split), {sweep.num_samples} trial(s)")
    _print_scale_estimates(experiment)
    return 0


def _print_scale_estimates(experiment: Any) -> None:
    """Each distinct image encoder's size and token grid, the store's disk size, the run's memory."""
    from vlpbench.data.prepare import encoder_summary, store_estimate

    import json

    seen: set[str] = set()
    for spec in experiment.runs:  # each distinct pair of encoders at its image size, built once
        config = spec.run_config()
        key = json.dumps([spec.config["model"], spec.config["data"].get("image_size")], sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            print(encoder_summary(config))
    first = experiment.runs[0].run_config()
    print(store_estimate(first))


def cmd_schema(args: argparse.Namespace) -> int:
    import json

    from vlpbench.config.jsonschema import experiment_schema
    from vlpbench.plugins import get_registry

    schema = experiment_schema(get_registry())
    print(json.dumps(schema, indent=2))
    for problem in schema.get("x-vlpbench-unavailable", []):
        print(f"warning: left out of the schema: {problem}", file=sys.stderr)
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    from vlpbench.describe import check_kind, listing
    from vlpbench.plugins import get_plugins

    check_kind(args.kind)
    loaded = get_plugins()
    if args.json:
        import json

        data = listing(loaded, args.kind)
        failures = 0
        if args.check:
            for component in data["components"]:
                try:
                    loaded.registry.get(component["kind"], component["name"]).load()
                    component["check"] = "ok"
                except UserError as exc:
                    failures += 1
                    component["check"] = str(exc)
        print(json.dumps(data, indent=2))
        return 1 if failures else 0
    print("plugins:")
    for plugin in loaded.plugins:
        extra = f"  ({plugin.reason})" if plugin.reason else ""
        print(f"  {plugin.name:<20} {plugin.version or '?':<10} {plugin.status}{extra}")
    failures = 0
    print("components:")
    for entry in loaded.registry.all_entries():
        if args.kind and entry.kind != args.kind:
            continue
        state = ""
        if args.check:
            try:
                entry.load()
                state = "  ok"
            except UserError as exc:
                failures += 1
                state = f"  FAILED: {exc}"
        print(f"  {entry.kind:<19} {entry.name:<28} [{entry.origin}] {entry.summary}{state}")
    for problem in loaded.registry.problems:
        print(f"warning: {problem}")
    if args.check:
        print(f"check: {failures} component(s) failed to import" if failures else "check: every component imports")
    return 1 if failures else 0


def cmd_export(args: argparse.Namespace) -> int:
    from vlpbench import api

    for folder in api.export(args.run, args.format, args.out):
        print(f"wrote {folder}/ ({', '.join(sorted(p.name for p in folder.iterdir()))})")
    return 0


def cmd_describe(args: argparse.Namespace) -> int:
    from vlpbench import api
    from vlpbench.describe import format_description

    infos = api.describe(args.component, args.kind)
    if args.json:
        import json

        print(json.dumps(infos if len(infos) > 1 else infos[0], indent=2, default=str))
    else:
        print("\n\n".join(format_description(info) for info in infos))
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from vlpbench.leaderboard import write_leaderboard

    folders = [Path(folder) for folder in args.dirs]
    for path in folders:
        if not (path / "runs").is_dir():
            raise ConfigError(f"'{path}' holds no runs/ folder; give an experiment's results folder such as results/ablation.")
    if args.baseline is not None:
        _check_baseline(args.baseline, folders)
    out = Path(args.out) if args.out else folders[0]
    out.mkdir(parents=True, exist_ok=True)
    print(write_leaderboard(out, baseline=args.baseline, roots=folders))
    print(f"written: {out}/leaderboard.md, leaderboard_full.md, leaderboard.csv, leaderboard.tex")
    return 0


def _check_baseline(baseline: str, folders: list[Path]) -> None:
    """``--baseline`` must name a variant present in the folders: otherwise the comparison would be
    silently dropped from the board."""
    from vlpbench.board.collect import collect
    from vlpbench.errors import did_you_mean

    variants = sorted({str(v) for v in collect(folders).runs.get("variant", [])})
    if baseline not in variants:
        raise ConfigError(f"--baseline '{baseline}' is not a variant of these runs{did_you_mean(baseline, variants) or '.'} "
                          f"Variants: {', '.join(variants) or 'none'}. Without a valid baseline the board would have no "
                          "comparison columns.")


def cmd_data_describe(args: argparse.Namespace) -> int:
    import time

    from vlpbench.data.synthcxr import FINDINGS, SynthCXRConfig, generate

    config = SynthCXRConfig(seed=args.seed, image_size=args.image_size, difficulty=args.difficulty,
                            normal_fraction=args.normal_fraction)
    from vlpbench.resources import check_fits, synthcxr_bytes

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


def _set_values(pairs: list[str] | None, example: str = "valid_size=5000") -> dict[str, object]:
    """``--set KEY=VALUE`` pairs; values are YAML (``1e-4`` is a number, ``{name: oracle}`` a mapping)."""
    import re

    import yaml

    values: dict[str, object] = {}
    for pair in pairs or []:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set takes KEY=VALUE (e.g. --set {example}), got '{pair}'.")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {pair}: the value is not valid YAML ({str(exc).splitlines()[0]}); quote "
                              f"it for the shell, e.g. --set '{key.strip()}={{name: oracle}}'.") from None
        if isinstance(value, str) and re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+", value.strip()):
            value = float(value)  # YAML 1.1 reads 1e-4 as text; on a command line it means the number
        values[key.strip()] = value
    return values


def _settings(args: argparse.Namespace) -> dict[str, object]:
    """The ``--set`` overrides of ``run``/``validate``/``sweep``, with ``--device`` as ``pretrain.device``."""
    settings = _set_values(getattr(args, "set", None), example="pretrain.lr=1e-4")
    if getattr(args, "device", None):
        if "pretrain.device" in settings and settings["pretrain.device"] != args.device:
            raise ConfigError(f"--device {args.device} and --set pretrain.device={settings['pretrain.device']} "
                              "disagree; give one of them.")
        settings["pretrain.device"] = args.device
    return settings


def _add_settings(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="override a config key of every variant by dotted path, as variants do (repeatable), "
                             "e.g. --set pretrain.lr=1e-4; validated like the file, recorded in each run's "
                             "config.yaml, part of the runs' identity")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"],
                        help="where pretraining and evaluation run: --set pretrain.device=DEVICE")


def cmd_data_verify(args: argparse.Namespace) -> int:

    from vlpbench.build import build_component
    from vlpbench.context import BuildContext
    from vlpbench.engine.files import write_json, write_text
    from vlpbench.plugins import get_registry

    registry = get_registry()
    spec = {"name": args.name, "root": args.root, **_set_values(args.set)}
    if args.image_size:
        spec["image_size"] = args.image_size
    if not hasattr(registry.get("dataset", args.name).load(), "verify"):
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
    from vlpbench.build import build_component
    from vlpbench.context import BuildContext
    from vlpbench.data.prepare import prepare
    from vlpbench.plugins import get_registry

    spec = {"name": args.name, **({"root": args.root} if args.root else {}), **_set_values(args.set)}
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
    import json

    from vlpbench.build import build_component
    from vlpbench.context import BuildContext
    from vlpbench.mining_quality import evaluate_miner
    from vlpbench.plugins import get_registry

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
    import math

    return "—" if value is None or not math.isfinite(value) else f"{100 * value:.1f}%"


def cmd_new_plugin(args: argparse.Namespace) -> int:
    from vlpbench.scaffold import new_plugin

    root = new_plugin(args.name, Path(args.dest), args.kind)
    print(f"wrote {root}: install it with `pip install -e {root}`, then `vlpbench check-plugin {args.name}`, "
          f"`pytest {root / 'tests'}` and `vlpbench run {root / 'experiments' / (args.name + '.yaml')}`.")
    return 0


def cmd_check_plugin(args: argparse.Namespace) -> int:
    from vlpbench.conformance import check_plugin, format_results

    results = check_plugin(args.plugin)
    print(format_results(results))
    return 1 if any(r.status == "FAIL" for r in results) else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vlpbench", description="Benchmark registry for medical vision-language pretraining.")
    parser.add_argument("--version", action="version", version=f"vlpbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="pretrain and evaluate every run of an experiment, then print the leaderboard")
    run.add_argument("file", help="experiment YAML file, or the name of a shipped one (quickstart, ablation, ...; "
                                  "`vlpbench init --list`)")
    run.add_argument("--variant", action="append", help="only this variant (repeatable)")
    run.add_argument("--seeds", type=_seeds, help="override the file's seeds, e.g. '0' or '0,1,2'")
    run.add_argument("--results", default="results", help="results root (default: results/)")
    run.add_argument("--rerun-stale", action="store_true", help="rerun finished runs made under other versions")
    run.add_argument("--no-reuse", action="store_true",
                     help="pretrain even when a finished run differs from this one only in its tasks")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_settings(run)
    run.add_argument("--report-to", metavar="TRACKERS",
                     help="log every run to these trackers while it trains: tensorboard, mlflow, wandb (comma-"
                          "separated; 'none' for none); overrides the file's report_to")
    run.add_argument("--dry-run", action="store_true",
                     help="print which runs are finished, stale, to resume or new (with a time estimate from the "
                          "finished runs) and stop; nothing is run or written")
    run.add_argument("--launcher", default="local", metavar="NAME",
                     help="a launcher component: local: in this process (default); slurm: one job array through "
                          "submitit, settings from the file's launcher: section, returns at once (see `vlpbench "
                          "status`); or a plugin's (`vlpbench plugins --kind launcher`)")
    run.set_defaults(handler=cmd_run)

    sweep = sub.add_parser("sweep", help="search hyperparameters with Ray Tune (the file's sweep: section); "
                                         "trials score the validation split")
    sweep.add_argument("file", help="experiment YAML file with a sweep: section (or a shipped experiment's name)")
    sweep.add_argument("--variant", help="the variant to search around (needed when the file has several)")
    sweep.add_argument("--results", default="results", help="results root (default: results/); trials land in "
                                                             "<results>/<experiment>-sweep/")
    sweep.add_argument("--resume", action="store_true", help="continue an interrupted sweep")
    sweep.add_argument("--launcher", default="local", metavar="NAME",
                       help="local: Ray in this process (default); slurm: the Tune driver in a Slurm allocation; or "
                            "a plugin's launcher that can run sweeps")
    sweep.add_argument("--num-cpus", type=int, help="CPUs Ray may use here (default: all this process may use)")
    sweep.add_argument("--address", help="join this running Ray cluster (HOST:PORT, or 'auto' for the one last started "
                                         "here) instead of starting one of the sweep's own (the default, also "
                                         "when RAY_ADDRESS is set)")
    _add_settings(sweep)
    sweep.set_defaults(handler=cmd_sweep)

    init = sub.add_parser("init", help="copy an experiment vlpbench ships (quickstart, ablation, ...) here to edit")
    init.add_argument("name", nargs="?", help="shipped experiment to copy (see --list)")
    init.add_argument("--out", help="file to write (default: ./NAME.yaml)")
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    init.add_argument("--list", action="store_true", help="list the shipped experiments")
    init.set_defaults(handler=cmd_init)

    status = sub.add_parser("status", help="state of the Slurm jobs submitted from here (runs and sweeps), with "
                                           "log paths of failed ones; rebuilds boards of finished submissions")
    status.add_argument("--results", default="results", help="results root (default: results/)")
    status.set_defaults(handler=cmd_status)

    evaluate = sub.add_parser("eval", help="score a checkpoint (a run directory, a timm image encoder file, or a "
                                           "published checkpoint with --format) with an experiment's tasks, "
                                           "without pretraining")
    evaluate.add_argument("checkpoint", help="run directory (results/<exp>/runs/<id>) or timm weights file")
    evaluate.add_argument("--experiment", required=True, help="experiment file whose data and tasks define the protocol")
    evaluate.add_argument("--variant", help="variant of the experiment to take the tasks from (default: the first)")
    evaluate.add_argument("--arch", help="timm architecture of a weights file (e.g. resnet50)")
    evaluate.add_argument("--label", required=True, help="row name on the leaderboard")
    evaluate.add_argument("--format", choices=["mgca", "gloria", "benchx", "timm", "lightning"],
                          help="layout of a published checkpoint file: where the image backbone's keys are "
                               "(needs --arch); reports what did not load, refuses a mostly random backbone")
    evaluate.add_argument("--prefix", help="the image backbone's key prefix in the file (as BenchX's pretrained_prefix), "
                                           "e.g. img_encoder_q.model.")
    evaluate.add_argument("--strip", action="append", help="also remove this from the start of keys (repeatable), "
                                                           "e.g. module.")
    evaluate.add_argument("--separate-row", action="store_true",
                          help="allow a --label that is a variant of the experiment: the result gets its own row "
                               "'<label> [eval]' instead of being refused (it is never pooled with the variant's seeds)")
    evaluate.add_argument("--results", default="results", help="results root (default: results/)")
    evaluate.set_defaults(handler=cmd_eval)

    export = sub.add_parser("export", help="write a finished run's encoders for others: the image encoder for timm "
                                           "(safetensors + config), the text encoder as a Hugging Face folder, "
                                           "each with a model card")
    export.add_argument("run", help="run directory (results/<experiment>/runs/<id>)")
    export.add_argument("--format", choices=["timm", "hf", "all"], default="all",
                        help="timm: the image encoder; hf: the text encoder; all (default): both")
    export.add_argument("--out", help="folder to write image_encoder/ and text_encoder/ into "
                                      "(default: ./export-<run id>)")
    export.set_defaults(handler=cmd_export)

    validate = sub.add_parser("validate", help="check an experiment file (keys, components, parameters) without running it")
    validate.add_argument("file", help="experiment YAML file or shipped experiment name")
    _add_settings(validate)
    validate.set_defaults(handler=cmd_validate)

    schema = sub.add_parser("schema", help="print the JSON Schema of experiment files, with every installed component")
    schema.set_defaults(handler=cmd_schema)

    plugins = sub.add_parser("plugins", help="list plugins and their components")
    plugins.add_argument("--check", action="store_true", help="import every component and report failures")
    plugins.add_argument("--kind", help="only components of this kind (image_encoder, positive_miner, task, ...)")
    plugins.add_argument("--json", action="store_true", help="print plugins and components as JSON")
    plugins.set_defaults(handler=cmd_plugins)

    describe_component = sub.add_parser("describe", help="one component: its parameters (types, defaults, limits), "
                                                         "documentation, kind and plugin")
    describe_component.add_argument("component", help="component name, e.g. fane.adaptive_miner or linear_probe")
    describe_component.add_argument("--kind", help="the kind, when the name exists in several kinds")
    describe_component.add_argument("--json", action="store_true", help="print it as JSON")
    describe_component.set_defaults(handler=cmd_describe)

    data = sub.add_parser("data", help="inspect datasets")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")
    describe = data_sub.add_parser("describe", help="generate SynthCXR and print prevalence, false-negative rates, examples")
    describe.add_argument("--split", default="pretrain", choices=["pretrain", "train", "val", "test"])
    describe.add_argument("--size", type=_bounded_int("--size", 1, 200_000), default=4000)
    describe.add_argument("--seed", type=_bounded_int("--seed", 0, 2**32 - 1), default=0)
    describe.add_argument("--image-size", type=_bounded_int("--image-size", 32, 512), default=64)
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

    quality = sub.add_parser("mining-quality", help="precision/recall of positive miners against SynthCXR's ground truth")
    quality.add_argument("--miner", action="append",
                         help="miner name or JSON spec (repeatable; default: every installed built-in or method miner)")
    quality.add_argument("--batches", type=int, default=50)
    quality.add_argument("--batch-size", type=int, default=64)
    quality.add_argument("--size", type=int, default=3000, help="SynthCXR pretraining split size")
    quality.add_argument("--seed", type=int, default=0)
    quality.add_argument("--laterality", action="store_true", help="truth also requires the same laterality")
    quality.set_defaults(handler=cmd_mining_quality)

    scaffold = sub.add_parser("new-plugin", help="write a ready-to-install plugin distribution with example components")
    scaffold.add_argument("name", help="plugin name: lowercase, e.g. mymethod (components become mymethod.*)")
    scaffold.add_argument("--kind", action="append", choices=["positive_miner", "negative_weighting", "local_head", "auxiliary",
                                                                "global_loss", "task", "image_encoder", "text_encoder",
                                                                "dataset"],
                          help="component kinds to scaffold (repeatable; default: all)")
    scaffold.add_argument("--dest", default=".", help="folder to write vlpbench-NAME into (default: here)")
    scaffold.set_defaults(handler=cmd_new_plugin)

    check = sub.add_parser("check-plugin", help="run the conformance suite on an installed plugin (exit 1 on a failure)")
    check.add_argument("plugin", help="entry-point name (e.g. fane) or distribution name (e.g. vlpbench-fane)")
    check.set_defaults(handler=cmd_check_plugin)

    board = sub.add_parser("leaderboard", help="rebuild leaderboard tables from run directories")
    board.add_argument("dirs", nargs="+", help="experiment results folders (results/<experiment>); several merge")
    board.add_argument("--baseline", help="variant to compare against (default: the experiment file's baseline)")
    board.add_argument("--out", help="folder for the board files (default: the first results folder)")
    board.set_defaults(handler=cmd_leaderboard)
    return parser


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail on the closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def _format_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int, line: str | None = None) -> str:
    return f"warning: {message}\n"


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    previous = warnings.formatwarning
    warnings.formatwarning = _format_warning
    try:
        code = handler(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the handling below, not at interpreter exit
        return code
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted: finished runs are kept; rerun the same command to resume.", file=sys.stderr)
        return 130
    except Terminated:
        print("terminated (SIGTERM): the current run is marked interrupted, finished runs are kept; rerun the "
              "same command to resume.", file=sys.stderr)
        return 143
    except BrokenPipeError:  # `vlpbench plugins | head`: the reader is gone, which is not an error
        _silence_stdout()
        return 141
    except Exception as exc:
        message = environment_message(exc)
        if message is not None:
            print(f"error: {message}", file=sys.stderr)
            return EnvironmentProblem.exit_code
        traceback.print_exc()
        print("\nThis is a bug in vlpbench (not a problem with your input); please report it with the "
              "traceback above.", file=sys.stderr)
        return 1
    finally:
        warnings.formatwarning = previous


if __name__ == "__main__":  # torchrun --nproc_per_node=N -m vlpbench.cli run FILE
    sys.exit(main())
