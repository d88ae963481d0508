"""Records of Slurm submissions and ``vlpbench status``.

Every submission writes ``<results>/<experiment>/slurm/<submission>/submission.json`` (the
submitit folder of that submission, fresh each time, with the jobs' logs): which jobs run which
run (or sweep), and where their logs are. ``vlpbench status`` reads these records, asks Slurm (via
submitit, i.e. ``sacct``) for the jobs' states, prints them with the log path and error of every
failed one, and rebuilds the leaderboard of a run submission once all its jobs are done.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from vlpbench.engine.files import read_json, write_json
from vlpbench.core.errors import UserError

RECORD = "submission.json"
DONE = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE",
        "PREEMPTED", "REVOKED"}


def write_record(folder: Path, record: dict[str, Any]) -> Path:
    path = folder / RECORD
    write_json(path, record)
    return path


def records(results_root: Path) -> list[tuple[Path, dict[str, Any]]]:
    found = sorted(results_root.glob(f"*/slurm/*/{RECORD}"), key=lambda p: p.parent.name)
    return [(p.parent, read_json(p)) for p in found]


def job_states(folder: Path, job_ids: list[str]) -> dict[str, str]:
    """Slurm's state of each job (submitit asks ``sacct`` once for all of them)."""
    try:
        import submitit
    except ImportError:
        raise UserError("vlpbench status reads Slurm jobs through submitit: pip install 'vlpbench[slurm]'.") from None
    jobs = [submitit.SlurmJob(folder=folder, job_id=job_id) for job_id in job_ids]
    if jobs:
        jobs[0].watcher.update()
    return {job.job_id: job.state.split()[0] if job.state else "UNKNOWN" for job in jobs}


def show_status(results_root: Path, echo: Callable[[str], None] = print) -> int:
    """Print every submission's jobs; return 1 if a job failed, else 0."""
    found = records(results_root)
    if not found:
        echo(f"no Slurm submissions under {results_root}/ (submit with `vlpbench run FILE --launcher slurm` or "
             "`vlpbench sweep FILE --launcher slurm`).")
        return 0
    any_failed = False
    for folder, record in found:
        states = job_states(folder, [job["job_id"] for job in record["jobs"]])
        done = sum(states[j["job_id"]] in DONE for j in record["jobs"])
        echo(f"{record['kind']} of '{record['experiment']}' submitted {record['submitted']} ({folder}): "
             f"{done}/{len(record['jobs'])} job(s) done")
        for job in record["jobs"]:
            state = states[job["job_id"]]
            run_state = ""
            if job.get("run_dir"):
                status_file = Path(job["run_dir"]) / "status.json"
                run_state = read_json(status_file).get("state", "") if status_file.is_file() else "pending"
            label = job.get("label", "")
            echo(f"  {job['job_id']:<12} {state:<11} {label:<28} {('run: ' + run_state) if run_state else ''}")
            failed = state in DONE and state != "COMPLETED" or run_state == "failed"
            if failed:
                any_failed = True
                error = ""
                if job.get("run_dir") and (Path(job["run_dir"]) / "status.json").is_file():
                    error = read_json(Path(job["run_dir"]) / "status.json").get("error", "")
                echo(f"    failed{': ' + error if error else ''}; log: {job['stderr']}")
        if record["kind"] == "run" and done == len(record["jobs"]):
            from vlpbench.board.leaderboard import write_leaderboard  # lazy: pandas, scipy

            board_dir = Path(record["board_dir"])
            if (board_dir / "runs").is_dir():
                write_leaderboard(board_dir, record.get("variants"), record.get("baseline"),
                                  planned=[tuple(p) for p in record.get("planned", [])])
                echo(f"  leaderboard: {board_dir}/leaderboard.md")
        if record["kind"] == "sweep" and done == len(record["jobs"]):
            best = Path(record["board_dir"]) / "best.yaml"
            echo(f"  best configuration: {best}" if best.is_file() else "  no best configuration written")
    return 1 if any_failed else 0
