"""Reading run directories into tables (the leaderboard's only input).

Several results folders merge into one board, so results made on different machines or clusters
are ranked together when — and only when — their protocols agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from vlpbench.config.identity import configuration_hash
from vlpbench.engine.files import CorruptFile, read_json, read_yaml_mapping

SCORE_COLUMNS = ["run_id", "variant", "seed", "column", "protocol", "value", "key", "samples", "path"]
RUN_COLUMNS = ["run_id", "experiment", "variant", "seed", "state", "error", "wall_seconds", "samples_seen",
               "parameters", "path", "variant_index", "baseline", "world_size", "config_hash", "started"]


@dataclass
class Collected:
    scores: pd.DataFrame  # one row per (run, score column)
    runs: pd.DataFrame  # one row per run directory, finished or not
    protocols: dict[str, dict[str, Any]] = field(default_factory=dict)  # protocol hash -> definition
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)  # run_id -> resolved config
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # run_id -> the variant's overrides
    #: (task, column) -> what the task declared about the column (headline, direction, chance, …)
    columns: dict[str, dict[str, Any]] = field(default_factory=dict)
    evaluated: dict[str, dict[str, Any]] = field(default_factory=dict)  # run_id -> evaluated checkpoint source


def run_configuration_hash(record: dict[str, Any]) -> str:
    """The configuration identity of a run from its ``config.yaml`` (see
    :func:`vlpbench.config.identity.configuration_hash`); an evaluation's identity has no seed in it,
    so it is its own run hash."""
    if record.get("evaluated") is not None:
        return str(record.get("run_hash") or record.get("run_id"))
    return configuration_hash(record.get("config") or {}, record.get("data_versions") or {},
                              int(record.get("world_size") or 1), str(record.get("evaluation") or "test"))


def _run_row(folder: Path, config: dict[str, Any]) -> dict[str, Any]:
    status = read_json(folder / "status.json", expect=dict) if (folder / "status.json").exists() else {"state": "pending"}
    provenance = read_json(folder / "provenance.json", expect=dict) if (folder / "provenance.json").exists() else {}
    timings = provenance.get("timings") or {}
    pretrain = provenance.get("pretrain") or {}
    batch = ((config.get("config") or {}).get("pretrain") or {}).get("batch_size")
    steps = pretrain.get("steps")
    return {
        "run_id": config["run_id"], "experiment": config["experiment"], "variant": config["variant"],
        "seed": config["seed"], "state": status.get("state", "pending"), "error": status.get("error", ""),
        "wall_seconds": (timings.get("pretrain_seconds") or 0.0) + (timings.get("eval_seconds") or 0.0) if timings else None,
        "samples_seen": steps * batch if steps is not None and batch else None,
        "parameters": provenance.get("parameters"), "path": str(folder),
        "variant_index": config.get("variant_index"), "baseline": config.get("baseline"),
        "world_size": int(config.get("world_size") or 1),
        "config_hash": run_configuration_hash(config),
        # when the run was started (else when it was set up): the newest run of a variant is its current configuration
        "started": float(status.get("started") or (folder / "config.yaml").stat().st_mtime),
    }


def _read_run(folder: Path, columns: dict[str, dict[str, Any]]
              ) -> tuple[dict[str, Any], dict[str, Any], list[tuple[dict[str, Any], dict[str, Any]]]]:
    """One run's board row, its config and its (score row, protocol) pairs, adding what its tasks declare
    about their columns to ``columns``; :class:`CorruptFile` names the first file that is unreadable or
    not shaped as vlpbench writes it."""
    config_file = folder / "config.yaml"
    config = read_yaml_mapping(config_file)
    missing = [key for key in ("run_id", "experiment", "variant", "seed") if key not in config]
    if missing:
        raise CorruptFile(config_file, f"it lacks the key(s) {', '.join(missing)} of a run's config")
    try:
        row = _run_row(folder, config)
    except (AttributeError, TypeError, ValueError) as exc:
        raise CorruptFile(folder / "provenance.json", f"a value has the wrong type ({exc})") from None
    metrics_file = folder / "metrics.json"
    found: list[tuple[dict[str, Any], dict[str, Any]]] = []
    if row["state"] != "finished" or not metrics_file.exists():
        return row, config, found
    try:
        for task, result in read_json(metrics_file, expect=dict).items():
            for column, info in (result.get("columns") or {}).items():
                columns.setdefault(f"{task}/{column}", {**info, "metric_version": result.get("metric_version")})
            for column, value in result["scores"].items():
                protocol = result["protocols"].get(column, {})
                digest = protocol.get("hash", "")
                if not isinstance(value, (int, float)) or isinstance(value, bool):
                    raise TypeError(f"score {task}/{column} is {value!r}, not a number")
                kind = (result.get("samples") or {}).get(column, "")
                if column in (result.get("samples_left_out") or {}):
                    kind = ""
                found.append(({"run_id": row["run_id"], "variant": row["variant"], "seed": row["seed"],
                               "column": f"{task}/{column}", "protocol": digest, "value": value,
                               "key": f"{task}/{column}", "samples": kind, "path": str(folder)}, protocol))
    except (AttributeError, KeyError, TypeError) as exc:
        raise CorruptFile(metrics_file, f"it is not shaped as vlpbench writes it ({type(exc).__name__}: {exc})") from None
    return row, config, found


def _corrupt_row(folder: Path, exc: CorruptFile) -> dict[str, Any]:
    """The board row of an unreadable run: named from its folder (``<variant>__seed<N>__<hash>``)."""
    variant, _, rest = folder.name.partition("__seed")
    seed_text = rest.split("__")[0]
    return {"run_id": folder.name, "experiment": None, "variant": variant or folder.name,
            "seed": int(seed_text) if seed_text.isdigit() else -1, "state": "corrupt",
            "error": f"{exc.path.name}: {exc.reason}", "wall_seconds": None, "samples_seen": None,
            "parameters": None, "path": str(folder), "variant_index": None, "baseline": None, "world_size": 1,
            "config_hash": "", "started": 0.0}


def collect(roots: list[Path]) -> Collected:
    """Every run below ``roots`` (each an experiment folder with ``runs/``, or a ``runs/`` folder)."""
    scores: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    protocols: dict[str, dict[str, Any]] = {}
    configs: dict[str, dict[str, Any]] = {}
    overrides: dict[str, dict[str, Any]] = {}
    columns: dict[str, dict[str, Any]] = {}
    evaluated: dict[str, dict[str, Any]] = {}
    seen: set[str] = set()
    for root in roots:
        runs_folder = root / "runs" if (root / "runs").is_dir() else root
        for folder in sorted(runs_folder.iterdir()) if runs_folder.is_dir() else []:
            if folder.name.startswith(".") or not (folder / "config.yaml").exists():
                continue  # a --rerun-stale replacement in progress, or not a run
            try:
                row, config, run_scores = _read_run(folder, columns)
            except CorruptFile as exc:
                runs.append(_corrupt_row(folder, exc))
                continue
            if row["run_id"] in seen:  # the same run copied into two of the merged folders counts once
                continue
            seen.add(row["run_id"])
            runs.append(row)
            if config.get("evaluated") is not None:
                evaluated[row["run_id"]] = config["evaluated"]
            configs[row["run_id"]] = config.get("config") or {}
            overrides[row["run_id"]] = config.get("overrides") or {}
            for score, protocol in run_scores:
                protocols.setdefault(score["protocol"], protocol)
                scores.append(score)
    return Collected(pd.DataFrame(scores, columns=SCORE_COLUMNS), pd.DataFrame(runs, columns=RUN_COLUMNS),
                     protocols, configs, overrides, columns, evaluated)
