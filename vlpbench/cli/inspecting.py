"""``vlpbench init``, ``export``, ``validate``, ``schema``, ``plugins`` and ``describe``: experiments and components
looked at, checked and handed on, without running anything."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from vlpbench.cli.options import add_settings, experiment_file, settings_of
from vlpbench.core.errors import UserError


def add_init(sub: Any) -> None:
    init = sub.add_parser("init", help="copy an experiment vlpbench ships (quickstart, ablation, ...) here to edit")
    init.add_argument("name", nargs="?", help="shipped experiment to copy (see --list)")
    init.add_argument("--out", help="file to write (default: ./NAME.yaml)")
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    init.add_argument("--list", action="store_true", help="list the shipped experiments")
    init.set_defaults(handler=cmd_init)


def add_export(sub: Any) -> None:
    export = sub.add_parser("export", help="write a finished run's encoders for others: the image encoder for timm "
                                           "(safetensors + config), the text encoder as a Hugging Face folder, "
                                           "each with a model card")
    export.add_argument("run", help="run directory (results/<experiment>/runs/<id>)")
    export.add_argument("--format", choices=["timm", "hf", "all"], default="all",
                        help="timm: the image encoder; hf: the text encoder; all (default): both")
    export.add_argument("--out", help="folder to write image_encoder/ and text_encoder/ into "
                                      "(default: ./export-<run id>)")
    export.set_defaults(handler=cmd_export)


def add_validate(sub: Any) -> None:
    validate = sub.add_parser("validate", help="check an experiment file (keys, components, parameters) without running it")
    validate.add_argument("file", help="experiment YAML file or shipped experiment name")
    add_settings(validate)
    validate.set_defaults(handler=cmd_validate)


def add_schema(sub: Any) -> None:
    schema = sub.add_parser("schema", help="print the JSON Schema of experiment files, with every installed component")
    schema.set_defaults(handler=cmd_schema)


def add_plugins(sub: Any) -> None:
    plugins = sub.add_parser("plugins", help="list plugins and their components")
    plugins.add_argument("--check", action="store_true", help="import every component and report failures")
    plugins.add_argument("--kind", help="only components of this kind (image_encoder, positive_miner, task, ...)")
    plugins.add_argument("--json", action="store_true", help="print plugins and components as JSON")
    plugins.set_defaults(handler=cmd_plugins)


def add_describe(sub: Any) -> None:
    describe_component = sub.add_parser("describe", help="one component: its parameters (types, defaults, limits), "
                                                         "documentation, kind and plugin")
    describe_component.add_argument("component", help="component name, e.g. fane.adaptive_miner or linear_probe")
    describe_component.add_argument("--kind", help="the kind, when the name exists in several kinds")
    describe_component.add_argument("--json", action="store_true", help="print it as JSON")
    describe_component.set_defaults(handler=cmd_describe)


def cmd_init(args: argparse.Namespace) -> int:
    from vlpbench.config.shipped import init_experiment, shipped_experiments

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


def cmd_export(args: argparse.Namespace) -> int:
    from vlpbench import api

    for folder in api.export(args.run, args.format, args.out):
        print(f"wrote {folder}/ ({', '.join(sorted(p.name for p in folder.iterdir()))})")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from vlpbench.config.loader import load_experiment

    settings = settings_of(args)
    args.file = experiment_file(args.file)
    experiment = load_experiment(args.file, settings=settings)
    if settings:
        print("with --set " + ", ".join(f"{k}={v!r}" for k, v in settings.items()))
    print(f"{args.file}: OK — experiment '{experiment.name}', {len(experiment.variants)} variant(s), "
          f"{len(experiment.runs)} run(s): {', '.join(experiment.variants)}")
    from vlpbench.config.floor import floor_lines

    for line in floor_lines(experiment.runs):
        print(line)
    if experiment.file.sweep is not None:
        from vlpbench.launchers.sweep_plan import load_sweep

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
    from vlpbench.config.jsonschema import experiment_schema
    from vlpbench.core.plugins import get_registry

    schema = experiment_schema(get_registry())
    print(json.dumps(schema, indent=2))
    for problem in schema.get("x-vlpbench-unavailable", []):
        print(f"warning: left out of the schema: {problem}", file=sys.stderr)
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    from vlpbench.core.describe import check_kind, listing
    from vlpbench.core.plugins import get_plugins

    check_kind(args.kind)
    loaded = get_plugins()
    if args.json:
        data = listing(loaded, args.kind, metadata=args.check)  # --check: import each, validate its metadata
        failures = 0
        if args.check:
            for component in data["components"]:
                component["check"] = component.pop("metadata_error", "ok")
                failures += component["check"] != "ok"
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


def cmd_describe(args: argparse.Namespace) -> int:
    from vlpbench import api
    from vlpbench.core.describe import format_description

    infos = api.describe(args.component, args.kind)
    if args.json:
        print(json.dumps(infos if len(infos) > 1 else infos[0], indent=2, default=str))
    else:
        print("\n\n".join(format_description(info) for info in infos))
    return 0
