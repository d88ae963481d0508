"""``vlpbench eval``: score a checkpoint under an experiment's downstream protocol, no pretraining.

Two kinds of checkpoint:
- a vlpbench run directory (its ``config.yaml`` and ``checkpoints/final.pt``): the model is rebuilt
  from the run's own config and its weights loaded — image and text encoder, so every task runs;
- an image encoder file in timm's format (``.pth`` / ``.safetensors``, e.g. released weights), with
  ``--arch``: only the image encoder exists, so tasks that need text are skipped and said so.

The tasks and their data come from the given experiment file (its first or chosen variant). The
result is an ordinary run directory under ``results/<experiment>/runs/``, labelled as an
evaluation, so it lands on the same leaderboard as the runs pretrained there.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import yaml

from vlpbench.config.identity import evaluation_identity
from vlpbench.config.loader import BASE_VARIANT, load_experiment
from vlpbench.config.schema import NAME_MAX_LENGTH, RunConfig, is_plain_name
from vlpbench.config.yamlmap import load_yaml_with_lines
from vlpbench.core.build import build_component
from vlpbench.core.context import BuildContext
from vlpbench.engine.files import file_sha256, write_yaml
from vlpbench.engine.rundir import RunDir, run_dir
from vlpbench.core.errors import ConfigError, DataError
from vlpbench.core.plugins import get_registry
from vlpbench.engine.checkpoint import load_checkpoint
from vlpbench.engine.importing import load_backbone
from vlpbench.engine.model import build_run
from vlpbench.engine.pretrain import resolve_device
from vlpbench.engine.provenance import write_provenance
from vlpbench.engine.scoring import evaluate_tasks, record_metrics
from vlpbench.models.image_timm import TimmImageEncoder
from vlpbench.tasks.base import Encoders


def _load_run_encoders(folder: Path, device: Any) -> tuple[Any, dict[str, Any]]:
    final = RunDir(folder).final_checkpoint
    if not final.is_file():
        raise DataError(f"'{folder}' is a run directory without checkpoints/final.pt: the run has not finished "
                        "pretraining. Finish it with `vlpbench run` first.")
    saved = yaml.safe_load((folder / "config.yaml").read_text())
    config = RunConfig.model_validate(saved["config"])
    built = build_run(config, get_registry(), int(saved.get("seed", 0)))
    built.model.load_state_dict(load_checkpoint(final)["model"])
    built.model.to(device).eval()
    source = {"kind": "vlpbench-run", "path": str(folder), "run_hash": saved.get("run_hash"),
              "experiment": saved.get("experiment"), "variant": saved.get("variant"), "seed": saved.get("seed")}
    return Encoders(built.model.image_encoder, built.model.text_encoder, precision=config.pretrain.precision), source


def _load_timm_encoder(path: Path, arch: str, config: Any, device: Any, key_map: dict[str, Any] | None = None,
                       echo: Callable[[str], None] = print) -> tuple[Any, dict[str, Any]]:

    image_size = int(config.data.params().get("image_size", 64))
    if key_map:  # a published layout: vlpbench maps the keys, reports what loaded, refuses a mostly random load

        params = TimmImageEncoder.Params(arch=arch)
        encoder = TimmImageEncoder(params, BuildContext(embed_dim=config.model.embed_dim, image_size=image_size))
        report = load_backbone(encoder.backbone, path, key_map.get("format"), key_map.get("prefix"), key_map.get("strip"))
        for line in report.lines():
            echo(line)
        source = {"kind": "imported", "path": str(path), "arch": arch, "sha256": file_sha256(path),
                  "format": key_map.get("format"), **({"strip": key_map["strip"]} if key_map.get("strip") else {}),
                  **report.record()}
        return Encoders(encoder.to(device).eval(), None), source
    params = TimmImageEncoder.Params(arch=arch, pretrained_path=str(path))
    encoder = TimmImageEncoder(params, BuildContext(embed_dim=config.model.embed_dim, image_size=image_size)).to(device).eval()
    return Encoders(encoder, None), {"kind": "timm-file", "path": str(path), "arch": arch, "sha256": file_sha256(path)}


def check_label(label: str) -> None:
    """``--label`` names a folder under ``results/<experiment>/runs/`` and a board row: a plain, short name."""
    if not is_plain_name(label):
        raise ConfigError(f"--label {label!r} is not a plain name: use at most {NAME_MAX_LENGTH} letters, digits and "
                          "_ . + - (starting with a letter or digit), e.g. --label biovil; it names a folder under "
                          "the results folder and a leaderboard row.")


def eval_label(label: str, experiment_file: Path, separate_row: bool) -> str:
    """The leaderboard row an evaluation goes to. A label that names a variant of the experiment
    would pool the evaluation with that variant's pretrained seeds, so it is refused, unless a
    separate row is asked for (then the row is ``<label> [eval]``)."""
    data, _ = load_yaml_with_lines(Path(experiment_file))
    variants = list((data or {}).get("variants") or {BASE_VARIANT: {}}) if isinstance(data, dict) else []
    if label not in variants:
        return label
    if separate_row:
        return f"{label} [eval]"
    raise ConfigError(f"--label '{label}' is a variant of {experiment_file} ({', '.join(variants)}): the evaluation "
                      "would be mixed into that variant's row as if it were one more seed. Choose another label, or "
                      f"pass --separate-row to list it as its own row '{label} [eval]'.")


def _checkpoint_encoders(checkpoint: Path, arch: str | None, config: Any, device: Any,
                         key_map: dict[str, Any] | None, echo: Callable[[str], None]) -> tuple[Any, dict[str, Any]]:
    """The encoders to evaluate and what they are (the ``evaluated`` record): a vlpbench run
    directory's, or an image encoder file's (with ``arch``, imported through ``key_map``)."""
    if key_map and not checkpoint.is_file():
        raise ConfigError(f"--format/--prefix/--strip import a checkpoint file; '{checkpoint}' is not one.")
    if checkpoint.is_dir() and (checkpoint / "config.yaml").is_file():
        return _load_run_encoders(checkpoint, device)
    if checkpoint.is_file():
        if not arch:
            raise ConfigError(f"'{checkpoint}' is an image encoder file: give its timm architecture with --arch "
                              "(e.g. --arch resnet50).")
        return _load_timm_encoder(checkpoint, arch, config, device, key_map, echo)
    raise DataError(f"'{checkpoint}' is neither a vlpbench run directory (with config.yaml) nor a checkpoint file.")


def evaluate_checkpoint(checkpoint: Path, experiment_file: Path, results_root: Path, label: str,
                        variant: str | None = None, arch: str | None = None,
                        echo: Callable[[str], None] = print, separate_row: bool = False,
                        key_map: dict[str, Any] | None = None) -> RunDir:
    """Evaluate ``checkpoint`` with the tasks of ``experiment_file``; return the run directory written.

    ``key_map`` (``{"format": ..., "prefix": ..., "strip": [...]}``, any of them) imports a published
    checkpoint's image backbone through :mod:`vlpbench.engine.importing`."""
    check_label(label)
    label = eval_label(label, experiment_file, separate_row)
    experiment = load_experiment(experiment_file, seeds=[0], variants=[variant] if variant else None)
    spec = experiment.runs[0]
    config = spec.run_config()
    device = resolve_device(config.pretrain.device)
    encoders, source = _checkpoint_encoders(Path(checkpoint), arch, config, device, key_map, echo)
    identity = evaluation_identity(source, spec.config["tasks"], spec.config["data"], spec.protocol_versions)
    run_id = f"{label}__eval__{identity[:10]}"
    run = run_dir(results_root, experiment.name, run_id)
    if run.path.resolve().parent != (Path(results_root) / experiment.name / "runs").resolve():
        raise ConfigError(f"--label '{label}' would write outside the results folder; use a plain name.")
    write_yaml(run.file("config.yaml"), {
        "experiment": experiment.name, "variant": label, "seed": 0, "run_id": run_id, "run_hash": identity,
        "evaluated": source, "overrides": {}, "data_versions": spec.protocol_versions, "config": spec.config,
    })
    run.set_status("running", started=time.time())
    context = BuildContext(embed_dim=config.model.embed_dim, seed=0,
                           image_size=int(config.data.params().get("image_size") or 64))
    # the experiment's own data is only read when a task has no dataset of its own (so released weights
    # can be scored on CheXpert without a copy of the pretraining data)
    needs_data = any(task.params().get("dataset") is None for task in config.tasks)
    data_source = build_component(get_registry(), "dataset", config.data, context) if needs_data else None
    started = time.perf_counter()
    task_data: dict[str, Any] = {}
    samples: dict[str, Any] = {}
    try:
        metrics, task_seconds = evaluate_tasks(config.tasks, encoders, data_source, context, device, echo,
                                               task_data=task_data, samples=samples)
    finally:
        encoders.close()  # removes the evaluation's on-disk feature cache, if it made one
    write_provenance(
        run.file("provenance.json"), seed=0, run_hash=identity, device=device,
        data=data_source.protocol() if data_source is not None else None, task_data=task_data,
        timings={"pretrain_seconds": 0.0, "eval_seconds": time.perf_counter() - started, "task_seconds": task_seconds},
        evaluated=source, pretrain=None)
    try:
        record_metrics(run, metrics, samples)
    except Exception as exc:  # a task without a valid score: the run shows as failed, its other tasks kept
        run.set_status("failed", error=str(exc))
        raise
    run.set_status("finished", finished=time.time())
    return run

