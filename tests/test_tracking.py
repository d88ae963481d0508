"""`report_to: [tensorboard, mlflow, wandb]` / `run --report-to`: every loss term, the learning rate,
the throughput and every task score, logged while the run trains and read back from the trackers'
own files (issue 21)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from tests.conftest import write_tiny_run

needs = lambda module: pytest.mark.skipif(importlib.util.find_spec(module) is None,  # noqa: E731
                                          reason=f"{module} is not installed (optional extra)")


def _finished(results: Path, name: str) -> tuple[Path, list[dict], dict]:
    (run,) = [p for p in (results / name / "runs").iterdir() if not p.name.startswith(".")]
    history = json.loads((run / "history.json").read_text())["steps"]
    metrics = json.loads((run / "metrics.json").read_text())
    return run, history, metrics


@needs("tensorboard")
@needs("mlflow")
def test_tensorboard_and_mlflow_receive_losses_lr_throughput_and_scores(tmp_path: Path, cli, monkeypatch) -> None:
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    path = write_tiny_run(tmp_path, "tracked", pretrain_size=48, extra="report_to: [tensorboard, mlflow]\n")
    path.write_text(path.read_text().replace("augment: false}", "augment: false, log_every: 1}"))
    results = tmp_path / "results"
    code, out, err = cli("run", str(path), "--results", str(results), "--quiet")
    assert code == 0, err
    run, history, metrics = _finished(results, "tracked")
    score = metrics["linear_probe"]["scores"]["auroc@100%"]
    terms = [k for k in history[0] if k not in ("step", "epoch", "lr")]
    assert "total" in terms and len(history) == 6

    events = EventAccumulator(str(results / "tracked" / "tensorboard" / run.name))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {f"loss/{t}" if not t.startswith("stats/") else t for t in terms} <= tags
    assert [(e.step, round(e.value, 5)) for e in events.Scalars("loss/total")] == \
        [(r["step"], round(r["total"], 5)) for r in history]
    assert [e.step for e in events.Scalars("lr")] == [r["step"] for r in history]
    assert events.Scalars("throughput/samples_per_second")[-1].value > 0
    assert events.Scalars("score/linear_probe/auroc@100%")[0].value == pytest.approx(score)

    client = MlflowClient(tracking_uri=f"sqlite:///{(results / 'tracked' / 'mlflow.db').resolve()}")
    experiment = client.get_experiment_by_name("tracked")
    (logged,) = client.search_runs([experiment.experiment_id])
    assert logged.info.run_name == run.name and logged.info.status == "FINISHED"
    assert logged.data.tags["vlpbench.run_hash"].startswith(run.name.rsplit("__", 1)[1])
    assert logged.data.params["pretrain.lr"] == "0.001" and logged.data.params["objective.global.name"] == "infonce"
    losses = client.get_metric_history(logged.info.run_id, "loss/total")
    assert sorted((m.step, round(m.value, 5)) for m in losses) == [(r["step"], round(r["total"], 5)) for r in history]
    assert logged.data.metrics["score/linear_probe/auroc_at_100pct"] == pytest.approx(score)
    assert logged.data.metrics["time/pretrain_seconds"] > 0


@needs("mlflow")
def test_mlflow_file_store_from_the_environment_and_tracking_leaves_identities_alone(tmp_path: Path, cli,
                                                                                     monkeypatch) -> None:
    from mlflow.tracking import MlflowClient

    store = tmp_path / "mlruns"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    path = write_tiny_run(tmp_path, "filestore", pretrain_size=48)
    results = tmp_path / "results"
    code, out, err = cli("run", str(path), "--results", str(results), "--quiet", "--report-to", "mlflow")
    assert code == 0, err
    run, history, metrics = _finished(results, "filestore")
    client = MlflowClient(tracking_uri=store.as_uri())
    (logged,) = client.search_runs([client.get_experiment_by_name("filestore").experiment_id])
    assert len(client.get_metric_history(logged.info.run_id, "loss/total")) >= 1
    assert logged.data.metrics["score/linear_probe/auroc_at_100pct"] == pytest.approx(
        metrics["linear_probe"]["scores"]["auroc@100%"])
    # the same experiment without tracking: the same run, found finished
    code, out, err = cli("run", str(path), "--results", str(results), "--dry-run", "--report-to", "none")
    assert code == 0 and "runs: 1 finished" in out


def wandb_records(path: Path) -> list:
    """The records of a W&B offline run file (``run-<id>.wandb``), read without W&B's own reader
    (which moved out of Python): a 7-byte file header, then LevelDB-log records (CRC, length, type;
    full, or first/middle/last pieces) in 32 KiB blocks, each a ``wandb_internal_pb2.Record``."""
    import struct

    from wandb.proto import wandb_internal_pb2 as pb

    data, block, records, pending = path.read_bytes(), 32768, [], b""
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    position = 7
    while position + 7 <= len(data):
        left = block - position % block
        if left < 7:  # a block's tail too short for a header is padding
            position += left
            continue
        _, length, kind = struct.unpack("<IHB", data[position:position + 7])
        pending += data[position + 7:position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # a full record, or the last piece of one
            record = pb.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


@needs("wandb")
def test_wandb_offline_run_file_holds_config_steps_and_scores(tmp_path: Path, cli, monkeypatch) -> None:
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    path = write_tiny_run(tmp_path, "wandbed", pretrain_size=48)
    path.write_text(path.read_text().replace("augment: false}", "augment: false, log_every: 1}"))
    results = tmp_path / "results"
    code, out, err = cli("run", str(path), "--results", str(results), "--quiet", "--report-to", "wandb")
    assert code == 0, err
    run, history, metrics = _finished(results, "wandbed")
    (run_file,) = (results / "wandbed" / "wandb").glob("offline-run-*/run-*.wandb")  # offline by default
    records = wandb_records(run_file)
    of = lambda kind: [r for r in records if r.WhichOneof("record_type") == kind]  # noqa: E731
    key = lambda item: item.key or "/".join(item.nested_key)  # noqa: E731
    (started,) = [r.run for r in of("run")]
    assert (started.display_name, started.project, started.run_group) == (run.name, "wandbed", "base")
    config = {key(i): json.loads(i.value_json) for i in started.config.update}
    assert config["pretrain"]["lr"] == 0.001 and config["objective"]["global"]["name"] == "infonce"
    rows = [{key(i): json.loads(i.value_json) for i in r.history.item} for r in of("history")]
    assert [(row["_step"], round(row["loss/total"], 5)) for row in rows] == \
        [(r["step"], round(r["total"], 5)) for r in history]
    assert all(row["lr"] == pytest.approx(r["lr"]) for row, r in zip(rows, history))
    assert rows[-1]["score/linear_probe/auroc@100%"] == pytest.approx(metrics["linear_probe"]["scores"]["auroc@100%"])
    assert rows[-1]["time/pretrain_seconds"] > 0 and any("throughput/samples_per_second" in row for row in rows)
    assert [r.exit.exit_code for r in of("exit")] == [0]
    from vlpbench.engine import tracking

    assert tracking.mlflow_key("auroc@100%") == "auroc_at_100pct"


def test_an_unknown_or_missing_tracker_is_refused_before_any_run(tmp_path: Path, cli, monkeypatch) -> None:
    path = write_tiny_run(tmp_path, "refused", pretrain_size=48)
    results = tmp_path / "results"
    code, out, err = cli("run", str(path), "--results", str(results), "--report-to", "tensorbord")
    assert code == 2 and "did you mean 'tensorboard'" in err
    from vlpbench.engine import tracking

    monkeypatch.setattr(tracking, "installed", lambda module: False)
    code, out, err = cli("run", str(path), "--results", str(results), "--report-to", "mlflow")
    assert code == 2 and "pip install 'vlpbench[mlflow]'" in err
    assert not (results / "refused" / "runs").exists()
    path.write_text(path.read_text() + "report_to: [neptune]\n")
    code, out, err = cli("validate", str(path))
    assert code == 2 and "report_to" in err
