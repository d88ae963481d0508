"""Reading run directories into tables (the leaderboard's only input).

Several results folders merge into one board, so results made on different machines or clusters
are ranked together when — and only when — their protocols agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from vlpbench.engine.files import read_json

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
    from vlpbench.config.identity import configuration_hash

    if record.get("evaluated") is not None:
        return str(record.get("run_hash") or record.get("run_id"))
    return configuration_hash(record.get("config") or {}, record.get("data_versions") or {},
                              int(record.get("world_size") or 1), str(record.get("evaluation") or "test"))


def _run_row(folder: Path, config: dict[str, Any]) -> dict[str, Any]:
    status = read_json(folder / "status.json") if (folder / "status.json").is_file() else {"state": "pending"}
    provenance = read_json(folder / "provenance.json") if (folder / "provenance.json").is_file() else {}
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
        for config_file in sorted(runs_folder.glob("*/config.yaml")):
            folder = config_file.parent
            config = yaml.safe_load(config_file.read_text())
            row = _run_row(folder, config)
            if row["run_id"] in seen:  # the same run copied into two of the merged folders counts once
                continue
            seen.add(row["run_id"])
            runs.append(row)
            if config.get("evaluated") is not None:
                evaluated[row["run_id"]] = config["evaluated"]
            configs[row["run_id"]] = config.get("config") or {}
            overrides[row["run_id"]] = config.get("overrides") or {}
            metrics_file = folder / "metrics.json"
            if row["state"] != "finished" or not metrics_file.is_file():
                continue
            for task, result in read_json(metrics_file).items():
                for column, info in (result.get("columns") or {}).items():
                    columns.setdefault(f"{task}/{column}", {**info, "metric_version": result.get("metric_version")})
                for column, value in result["scores"].items():
                    protocol = result["protocols"].get(column, {})
                    digest = protocol.get("hash", "")
                    protocols.setdefault(digest, protocol)
                    kind = (result.get("samples") or {}).get(column, "")
                    if column in (result.get("samples_left_out") or {}):
                        kind = ""
                    scores.append({"run_id": row["run_id"], "variant": row["variant"], "seed": row["seed"],
                                   "column": f"{task}/{column}", "protocol": digest, "value": value,
                                   "key": f"{task}/{column}", "samples": kind, "path": str(folder)})
    return Collected(pd.DataFrame(scores, columns=SCORE_COLUMNS), pd.DataFrame(runs, columns=RUN_COLUMNS),
                     protocols, configs, overrides, columns, evaluated)
