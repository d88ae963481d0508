"""Experiment tracking: ``report_to: [tensorboard, mlflow, wandb]`` (or ``vlpbench run --report-to``).

Each run is logged *while it trains*, through the libraries themselves (optional extras, imported
only when a run uses them):

- every loss term of the history (``loss/total``, ``loss/<term>``, ``stats/…``) and the learning
  rate at every logged step, and the throughput (samples per second) of each logging window;
- its configuration (flattened, as parameters) and identity (experiment, variant, seed, run hash);
- at the end, every task score (``score/<task>/<column>``) and the run's timings.

Where it goes: TensorBoard event files under ``<results>/<experiment>/tensorboard/<run id>/``;
MLflow to ``MLFLOW_TRACKING_URI`` when set, else to a SQLite store
``<results>/<experiment>/mlflow.db`` (experiment = the experiment's name, run name = the run id);
Weights & Biases in offline mode under ``<results>/<experiment>/wandb/`` unless ``WANDB_MODE`` says
otherwise. Tracking is never part of a run's identity, and only rank 0 of a multi-process run
logs. A resumed run logs the steps it trains after the restart (to a new tracker run).
"""

from __future__ import annotations

import importlib.util
import os
import re
import time
from pathlib import Path
from typing import Any

import yaml

from vlpbench.core.errors import ConfigError, UserError, did_you_mean

BACKENDS = ("tensorboard", "mlflow", "wandb")
_EXTRAS = {"tensorboard": ("tensorboard", "tensorboard"), "mlflow": ("mlflow", "mlflow"), "wandb": ("wandb", "wandb")}


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def check_backends(names: list[str] | tuple[str, ...]) -> None:
    """Refuse an unknown backend, or one whose library is not installed, before any run starts."""
    for name in names:
        if name not in BACKENDS:
            raise ConfigError(f"report_to: '{name}' is not a tracker{did_you_mean(name, list(BACKENDS)) or '.'} "
                              f"Choose from {', '.join(BACKENDS)}.")
        module, extra = _EXTRAS[name]
        if not installed(module):
            raise UserError(f"report_to: {name} needs the '{module}' package, which is not installed: "
                            f"pip install 'vlpbench[{extra}]' (or pip install {module}), or drop it from report_to.")


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """``{"pretrain": {"lr": 1e-4}}`` → ``{"pretrain.lr": 1e-4}`` (lists by index)."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}{key}."))
        return out
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        out = {}
        for index, item in enumerate(value):
            out.update(flatten(item, f"{prefix}{index}."))
        return out
    return {prefix[:-1]: value}


def history_metrics(row: dict[str, Any]) -> dict[str, float]:
    """A history record's loggable numbers: ``loss/<term>`` (``stats/…`` kept as is) and ``lr``."""
    out: dict[str, float] = {}
    for key, value in row.items():
        if key in ("step", "epoch") or not isinstance(value, (int, float)):
            continue
        out[key if key == "lr" or key.startswith("stats/") else f"loss/{key}"] = float(value)
    return out


def score_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    return {f"score/{task}/{column}": float(value) for task, result in metrics.items() if isinstance(result, dict)
            for column, value in (result.get("scores") or {}).items() if isinstance(value, (int, float))}


class _TensorBoard:
    def __init__(self, folder: Path, spec: Any) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(folder / "tensorboard" / spec.run_id))
        self.writer.add_text("config", "```\n" + yaml.safe_dump(spec.config, sort_keys=False) + "```", 0)

    def log(self, values: dict[str, float], step: int) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def finish(self, state: str) -> None:
        self.writer.close()


_MLFLOW_KEY = re.compile(r"[^A-Za-z0-9_\-. :/]")


def mlflow_key(key: str) -> str:
    """MLflow's names allow letters, digits and ``_-. :/``: ``auroc@100%`` becomes ``auroc_at_100pct``."""
    return _MLFLOW_KEY.sub("_", key.replace("@", "_at_").replace("%", "pct"))


class _MLflow:
    def __init__(self, folder: Path, spec: Any) -> None:
        from mlflow.tracking import MlflowClient

        uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(folder / 'mlflow.db').resolve()}"
        folder.mkdir(parents=True, exist_ok=True)
        self.client = MlflowClient(tracking_uri=uri)
        found = self.client.get_experiment_by_name(spec.experiment)
        experiment = found.experiment_id if found is not None else self.client.create_experiment(spec.experiment)
        tags = {"vlpbench.variant": spec.variant, "vlpbench.seed": str(spec.seed), "vlpbench.run_hash": spec.run_hash,
                "vlpbench.run_id": spec.run_id}
        self.run_id = self.client.create_run(experiment, run_name=spec.run_id, tags=tags).info.run_id
        from mlflow.entities import Param

        params = [Param(mlflow_key(k), str(v)[:6000]) for k, v in flatten(spec.config).items()]
        for start in range(0, len(params), 100):  # MLflow takes at most 100 parameters per call
            self.client.log_batch(self.run_id, params=params[start:start + 100])

    def log(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(mlflow_key(k), v, now, step) for k, v in values.items()]
        for start in range(0, len(metrics), 1000):
            self.client.log_batch(self.run_id, metrics=metrics[start:start + 1000])

    def finish(self, state: str) -> None:
        self.client.set_terminated(self.run_id, "FINISHED" if state == "finished" else "FAILED")


class _WandB:
    def __init__(self, folder: Path, spec: Any) -> None:
        import wandb

        folder.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(project=spec.experiment, name=spec.run_id, group=spec.variant, dir=str(folder),
                              mode=os.environ.get("WANDB_MODE", "offline"), config=spec.config,
                              tags=[f"seed{spec.seed}"], reinit=True)

    def log(self, values: dict[str, float], step: int) -> None:
        self.run.log(values, step=step)

    def finish(self, state: str) -> None:
        self.run.finish(exit_code=0 if state == "finished" else 1)


_CLASSES = {"tensorboard": _TensorBoard, "mlflow": _MLflow, "wandb": _WandB}


class Tracking:
    """The trackers of one run: history rows as they are flushed, scores at the end."""

    def __init__(self, names: list[str] | tuple[str, ...], spec: Any, folder: Path) -> None:
        self.backends = [_CLASSES[name](folder, spec) for name in names]
        self.samples_per_step = int(spec.config.get("pretrain", {}).get("batch_size", 0)) * max(1, spec.world_size)
        self.last: tuple[float, int] | None = None
        self.step = 0

    def log_history(self, rows: list[dict[str, Any]]) -> None:
        """Called with each window of history records; adds the window's throughput."""
        now = time.perf_counter()
        for row in rows:
            self._log(history_metrics(row), int(row["step"]))
        if rows:
            last_step = int(rows[-1]["step"])
            if self.last is not None and now > self.last[0] and last_step > self.last[1]:
                rate = (last_step - self.last[1]) * self.samples_per_step / (now - self.last[0])
                self._log({"throughput/samples_per_second": rate}, last_step)
            self.last = (now, last_step)
            self.step = last_step

    def log_results(self, metrics: dict[str, Any], timings: dict[str, Any]) -> None:
        values = score_metrics(metrics)
        values.update({f"time/{k}": float(v) for k, v in timings.items() if isinstance(v, (int, float))})
        self._log(values, self.step)

    def _log(self, values: dict[str, float], step: int) -> None:
        for backend in self.backends:
            backend.log(values, step)

    def finish(self, state: str) -> None:
        for backend in self.backends:
            backend.finish(state)
