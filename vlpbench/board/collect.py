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

SCORE_COLUMNS = ["run_id", "variant", "seed", "column", "protocol", "value"]
RUN_COLUMNS = ["run_id", "experiment", "variant", "seed", "state", "error", "wall_seconds", "samples_seen",
               "parameters", "path", "variant_index", "baseline", "world_size"]


@dataclass
class Collected:
    scores: pd.DataFrame  # one row per (run, score column)
    runs: pd.DataFrame  # one row per run directory, finished or not
    protocols: dict[str, dict[str, Any]] = field(default_factory=dict)  # protocol hash -> definition
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)  # run_id -> resolved config
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # run_id -> the variant's overrides


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
    }


def collect(roots: list[Path]) -> Collected:
    """Every run below ``roots`` (each an experiment folder with ``runs/``, or a ``runs/`` folder)."""
    scores: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    protocols: dict[str, dict[str, Any]] = {}
    configs: dict[str, dict[str, Any]] = {}
    overrides: dict[str, dict[str, Any]] = {}
    for root in roots:
        runs_folder = root / "runs" if (root / "runs").is_dir() else root
        for config_file in sorted(runs_folder.glob("*/config.yaml")):
            folder = config_file.parent
            config = yaml.safe_load(config_file.read_text())
            row = _run_row(folder, config)
            runs.append(row)
            configs[row["run_id"]] = config.get("config") or {}
            overrides[row["run_id"]] = config.get("overrides") or {}
            metrics_file = folder / "metrics.json"
            if row["state"] != "finished" or not metrics_file.is_file():
                continue
            for task, result in read_json(metrics_file).items():
                for column, value in result["scores"].items():
                    protocol = result["protocols"].get(column, {})
                    digest = protocol.get("hash", "")
                    protocols.setdefault(digest, protocol)
                    scores.append({"run_id": row["run_id"], "variant": row["variant"], "seed": row["seed"],
                                   "column": f"{task}/{column}", "protocol": digest, "value": value})
    return Collected(pd.DataFrame(scores, columns=SCORE_COLUMNS), pd.DataFrame(runs, columns=RUN_COLUMNS),
                     protocols, configs, overrides)
