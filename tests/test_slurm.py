"""``--launcher slurm``: the launcher: section, the submitted commands, and a real Slurm.

The integration tests need a reachable Slurm with accounting (``sbatch``, ``sacct``), such as the
one ``scripts/slurm/start.sh`` starts (CI does, and exports ``SLURM_CONF``). Without one they
skip, unless ``VLPBENCH_REQUIRE_SLURM=1`` (set by ``.ci/run``): then they fail.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import TINY_EXPERIMENT, write_tiny_run
from vlpbench.config.loader import load_experiment
from vlpbench.config.schema import SlurmConfig
from vlpbench.core.errors import ConfigError

def tiny_run(tmp_path: Path, name: str = "slurmtiny", seeds: str = "[0]", pretrain_size: int = 64,
             epochs: int = 2, extra: str = "") -> Path:
    return write_tiny_run(tmp_path, name, seeds, pretrain_size, epochs,
                          "launcher: {time: 10, cpus: 1, array_parallelism: 4}\n" + extra)


# --- the launcher: section and the generated commands (no Slurm needed) ---------------------------

def test_bad_launcher_key_lists_the_valid_keys(tmp_path: Path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text(TINY_EXPERIMENT + "launcher: {partition: gpu, gpu: 1}\n")
    with pytest.raises(ConfigError) as info:
        load_experiment(path)
    message = str(info.value)
    assert "line 15" in message and "unknown key 'launcher.gpu'" in message and "did you mean 'gpus'" in message
    for key in ("partition", "time", "gpus", "cpus", "mem_gb", "array_parallelism", "sbatch"):
        assert key in message


def test_bad_launcher_value_is_one_paragraph(tmp_path: Path, cli) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text(TINY_EXPERIMENT + "launcher: {time: 0}\n")
    code, _, err = cli("validate", str(path))
    assert code == 2 and "launcher.time" in err and "Traceback" not in err


def test_launcher_section_becomes_submitit_parameters() -> None:
    from vlpbench.launchers.slurm import executor_parameters

    config = SlurmConfig(partition="gpu", time=120, gpus=2, cpus=8, mem_gb=32, array_parallelism=3,
                         sbatch={"account": "proj", "qos": "high"}, setup=["module load cuda"])
    params = executor_parameters(config, "vlpbench-x", nodes=2)
    assert params["partition"] == "gpu" and params["time"] == 120 and params["gpus_per_node"] == 2
    assert params["cpus_per_task"] == 8 and params["mem"] == "32768MB" and params["array_parallelism"] == 3
    assert params["additional_parameters"] == {"account": "proj", "qos": "high", "signal": "USR2@90"}
    assert params["setup"] == ["export SUBMITIT_PREEMPT_SIGNAL=USR2", "module load cuda"]
    assert params["nodes"] == 2 and params["ntasks_per_node"] == 1
    assert "partition" not in executor_parameters(SlurmConfig(), "x")  # the cluster's default partition


def test_submitit_accepts_the_parameters(tmp_path: Path) -> None:
    submitit = pytest.importorskip("submitit")
    from submitit.slurm.slurm import _make_sbatch_string

    from vlpbench.launchers.slurm import executor_parameters

    config = SlurmConfig(partition="gpu", gpus=1, mem_gb=4, sbatch={"account": "proj"})
    script = _make_sbatch_string(command="python -m x", folder=tmp_path, **executor_parameters(config, "vlpbench-x"))
    for line in ("#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=1", "#SBATCH --mem=4096MB", "#SBATCH --account=proj",
                 "#SBATCH --signal=USR2@90"):
        assert line in script
    # the executor the launcher submits through takes every parameter (submitit refuses unknown
    # names) and keeps them, with the requeue limit
    from vlpbench.launchers.slurm import _executor

    executor = _executor(tmp_path / "jobs", config.model_copy(update={"max_requeues": 2}), "vlpbench-x")
    assert isinstance(executor, submitit.SlurmExecutor) and executor.max_num_timeout == 2
    assert executor.parameters == executor_parameters(config, "vlpbench-x")
    with pytest.raises(ValueError):
        executor.update_parameters(not_an_sbatch_option=1)
    # another signal: Slurm sends it and the job listens for it (exported before the tasks start)
    config = SlurmConfig(signal="sighup", time=5)
    script = _make_sbatch_string(command="python -m x", folder=tmp_path, **executor_parameters(config, "vlpbench-x"))
    assert "#SBATCH --signal=HUP@30" in script and script.count("--signal") == 1
    assert script.index("export SUBMITIT_PREEMPT_SIGNAL=HUP") < script.index("python -m x")


@pytest.mark.parametrize("value", ["KILL", "TERM", "SIGCONT", "STOP", "INT", "USR9"])
def test_an_uncatchable_or_slurm_owned_signal_is_refused(tmp_path: Path, value: str) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text(TINY_EXPERIMENT + f"launcher: {{signal: {value}}}\n")
    with pytest.raises(ConfigError) as info:
        load_experiment(path)
    assert "launcher.signal" in str(info.value) and "USR2" in str(info.value)


def test_the_signal_is_set_in_one_place(tmp_path: Path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text(TINY_EXPERIMENT + "launcher: {sbatch: {signal: 'USR1@60'}}\n")
    with pytest.raises(ConfigError) as info:
        load_experiment(path)
    assert "launcher.signal" in str(info.value)


def test_ports_are_the_jobs_own_outside_the_ephemeral_range(tmp_path: Path) -> None:
    from vlpbench.launchers import ports

    proc = tmp_path / "range"
    proc.write_text("32768\t60999\n")
    assert ports.ephemeral_range(proc) == (32768, 60999)
    assert ports.ephemeral_range(tmp_path / "missing") == (32768, 60999)
    assert ports.reserved_range((32768, 60999)) == (20000, 32768)
    assert ports.reserved_range((15000, 40000)) == (40001, 65536)  # no room below: above
    # consecutive jobs (an array's tasks each have their own SLURM_JOB_ID) get different blocks
    firsts = [ports.candidates(job, ephemeral=(32768, 60999))[0] for job in range(1000, 1000 + 1500)]
    assert len(set(firsts)) == 1500 and all(20000 <= p < 32768 for p in firsts)
    assert ports.candidates(7, offset=1)[0] == ports.candidates(7)[0] + 1  # Ray's head beside DDP's port
    # a taken port is skipped
    import socket

    with socket.socket() as taken:
        taken.bind(("", 0))
        busy = taken.getsockname()[1]
        taken.listen()
        assert not ports.is_free(busy)
        free = ports.first_free([busy, *ports.candidates(1234)])
        assert free != busy and ports.is_free(free)
        with pytest.raises(OSError, match="none of the ports"):
            ports.first_free([busy])
    assert ports.slurm_job_id({"SLURM_JOB_ID": "4711"}) == 4711 and ports.slurm_job_id({}) is None


def test_multinode_commands_put_the_head_on_the_first_node(tmp_path: Path) -> None:
    from vlpbench.launchers.raycluster import head_command, worker_command

    head = head_command("10.0.0.1", 21001, cpus=8, gpus=4, folder=tmp_path / "h", ray="/venv/bin/ray")
    assert head[:4] == ["/venv/bin/ray", "start", "--head", "--block"]  # blocking: terminating it stops it
    for flag in ("--node-ip-address=10.0.0.1", "--port=21001", "--num-cpus=8", "--num-gpus=4", "--min-worker-port=0",
                 "--max-worker-port=0", "--dashboard-agent-listen-port=0", f"--temp-dir={tmp_path / 'h'}"):
        assert flag in head  # every port but the GCS's chosen free by the system, a temp dir of its own
    workers = worker_command(["n2", "n3"], "10.0.0.1:21001", cpus=8, gpus=4, folder=tmp_path / "w", ray="/venv/bin/ray")
    assert workers[:6] == ["srun", "--nodes=2", "--ntasks=2", "--ntasks-per-node=1", "--nodelist=n2,n3",
                           "--cpus-per-task=8"]
    ray_start = workers[workers.index("/venv/bin/ray"):]
    assert ray_start[:4] == ["/venv/bin/ray", "start", "--block", "--address=10.0.0.1:21001"]
    assert "--min-worker-port=0" in ray_start and f"--temp-dir={tmp_path / 'w'}" in ray_start


def test_a_run_task_checkpoints_by_resubmitting_itself(tmp_path: Path, tiny_experiment: Path) -> None:
    pytest.importorskip("submitit")
    from submitit.core.utils import DelayedSubmission

    from vlpbench.launchers.slurm import RunTask

    spec = load_experiment(tiny_experiment).runs[0]
    task = RunTask()
    delayed = task.checkpoint(spec, str(tmp_path), False)
    assert isinstance(delayed, DelayedSubmission) and delayed.function is task and delayed.args[0] == spec


def test_slurm_launcher_without_slurm_says_what_to_do(tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here
    code, _, err = cli("run", str(tiny_run(tmp_path)), "--launcher", "slurm", "--results", str(tmp_path / "r"))
    assert code == 2 and "sbatch" in err and "--launcher local" in err


def test_status_without_submissions(tmp_path: Path, cli) -> None:
    code, out, _ = cli("status", "--results", str(tmp_path))
    assert code == 0 and "no Slurm submissions" in out


# --- a real Slurm ---------------------------------------------------------------------------------

def _slurm_problem() -> str | None:
    try:
        import submitit  # noqa: F401
    except ImportError:
        return "submitit is not installed (pip install 'vlpbench[slurm]')"
    for program in ("sbatch", "sacct", "scontrol"):
        if shutil.which(program) is None:
            return f"no '{program}' on PATH (start one with scripts/slurm/start.sh)"
    try:
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=10)
        sacct = subprocess.run(["sacct", "-n", "-X", "-S", "now-1minute"], capture_output=True, text=True, timeout=10)
    except subprocess.TimeoutExpired:
        return "the Slurm controller does not answer"
    if ping.returncode != 0 or "UP" not in ping.stdout:
        return f"the Slurm controller is not reachable: {ping.stdout.strip()} {ping.stderr.strip()}"
    if sacct.returncode != 0:
        return f"Slurm accounting (sacct) does not work: {sacct.stderr.strip()}"
    return None


@pytest.fixture(scope="module")
def slurm() -> None:
    problem = _slurm_problem()
    if problem is None:
        return
    if os.environ.get("VLPBENCH_REQUIRE_SLURM") == "1":
        pytest.fail(f"VLPBENCH_REQUIRE_SLURM=1 but there is no usable Slurm: {problem}")
    pytest.skip(problem)


def requeued(log: str) -> bool:
    """Whether a job's log shows it was requeued: submitit's own line, or Slurm's notice when the
    requeue kills the step before submitit's line is flushed (a race seen once in the suite)."""
    return "Requeued job" in log or "DUE TO JOB REQUEUE" in log


def wait_for(jobs: list, limit: float = 240, release_requeued: bool = False) -> None:
    """Wait until every job is done. A requeued job waits for its begin time (Slurm holds it two
    minutes); ``release_requeued`` moves that to now, as an operator would."""
    from vlpbench.launchers.jobs import DONE

    deadline = time.time() + limit
    while time.time() < deadline:
        jobs[0].watcher.update()  # one sacct call for all (submitit's own rate limit would lag)
        if all(job.state in DONE for job in jobs):  # Slurm's end, not only the result file
            return
        if release_requeued:
            for job in jobs:
                if job.state == "PENDING":
                    subprocess.run(["scontrol", "update", f"JobId={job.job_id}", "StartTime=now"],
                                   capture_output=True, check=False)
        time.sleep(1)
    pytest.fail(f"Slurm jobs not done after {limit} s: {[(j.job_id, j.state) for j in jobs]}")


@pytest.mark.integration
def test_runs_go_out_as_one_job_array_and_every_result_lands(slurm, tmp_path: Path, cli) -> None:
    from vlpbench.launchers.slurm import submit_runs

    experiment = load_experiment(tiny_run(tmp_path, seeds="[0, 1]", extra="variants:\n  ok: {}\n  "
                                          "diverges: {pretrain.lr: 1.0e+30}\n"))
    started = time.time()
    jobs = submit_runs(experiment, tmp_path / "results", echo=lambda _: None)
    assert time.time() - started < 30  # submission returns at once
    assert len(jobs) == 4 and len({job.job_id.split("_")[0] for job in jobs}) == 1  # one array
    wait_for(jobs)
    code, out, _ = cli("status", "--results", str(tmp_path / "results"))
    assert code == 1, out  # a task failed ...
    assert "4/4 job(s) done" in out, out
    assert out.count("COMPLETED") == 2 and out.count("FAILED") == 2
    assert "diverged" in out and "log: " in out and "_log.err" in out  # ... with its error and log
    runs = tmp_path / "results" / "slurmtiny" / "runs"
    states = {p.name.split("__")[0] + p.name.split("__")[1]: json.loads((p / "status.json").read_text())["state"]
              for p in runs.iterdir()}
    assert states == {"okseed0": "finished", "okseed1": "finished",
                      "divergesseed0": "failed", "divergesseed1": "failed"}  # ... and loses no other
    board = (tmp_path / "results" / "slurmtiny" / "leaderboard.md").read_text()
    assert "| ok " in board and "2/2" in board


@pytest.mark.integration
def test_a_timed_out_task_is_requeued_and_resumes_from_its_checkpoint(slurm, tmp_path: Path) -> None:
    from vlpbench.launchers.slurm import submit_runs

    experiment = load_experiment(tiny_run(tmp_path, name="slurmslow", pretrain_size=256, epochs=4))
    [job] = submit_runs(experiment, tmp_path / "results", echo=lambda _: None)
    runs = tmp_path / "results" / "slurmslow" / "runs"
    deadline = time.time() + 120
    while not list(runs.glob("*/checkpoints/epoch-000.pt")):
        assert time.time() < deadline and not job.done(), "the run never wrote its first epoch checkpoint"
        time.sleep(0.2)
    job._interrupt(timeout=True)  # what submitit's own tests do: scancel --signal USR2, as Slurm does at a timeout
    wait_for([job], release_requeued=True)
    assert job.state == "COMPLETED"
    log = Path(job.paths.stdout).read_text() + Path(job.paths.stderr).read_text()
    assert "timed-out" in log and requeued(log)
    [run] = list(runs.iterdir())
    provenance = json.loads((run / "provenance.json").read_text())
    assert provenance["pretrain"]["resumed_from_epoch"] >= 1  # resumed, not restarted
    history = json.loads((run / "history.json").read_text())
    assert [r["step"] for r in history["steps"]] == list(range(4 * 16))  # no step lost or repeated


SWEEP = """\
sweep:
  space:
    pretrain.lr: {loguniform: [1.0e-4, 1.0e-2]}
  metric: pretrain/loss
  mode: min
  num_samples: 2
  max_concurrent: 1
  scheduler: {name: fifo}
"""


@pytest.mark.integration
def test_a_sweep_runs_inside_a_slurm_allocation(slurm, tmp_path: Path, cli) -> None:
    from vlpbench.launchers.slurm import submit_sweep
    from vlpbench.launchers.sweep_plan import load_sweep

    path = tiny_run(tmp_path, name="slurmsweep", epochs=1, extra=SWEEP)
    path.write_text(path.read_text().replace("cpus: 1,", "cpus: 2,"))
    job = submit_sweep(load_sweep(path), tmp_path / "results", echo=lambda _: None)
    wait_for([job], limit=400)
    log = Path(job.paths.stdout).read_text() + Path(job.paths.stderr).read_text()
    assert job.state == "COMPLETED", log[-3000:]
    folder = tmp_path / "results" / "slurmsweep-sweep"
    assert len(list((folder / "runs").glob("trial-*/metrics.json"))) == 2
    assert (folder / "best.yaml").is_file() and load_experiment(folder / "best.yaml").runs
    code, out, _ = cli("status", "--results", str(tmp_path / "results"))
    assert code == 0 and "COMPLETED" in out and "best configuration" in out


def test_a_multinode_sweep_driver_starts_the_head_then_srun_workers(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The driver's orchestration on a fake 3-node allocation (commands recorded, nothing started)."""
    pytest.importorskip("submitit")
    import vlpbench.launchers.raycluster as raycluster
    import vlpbench.launchers.slurm as slurm_module
    import vlpbench.launchers.sweep as sweep_module

    path = tiny_run(tmp_path, name="multi", extra=SWEEP + "launcher: {nodes: 3, cpus: 4}\n")
    path.write_text(path.read_text().replace("launcher: {time: 10, cpus: 1, array_parallelism: 4}\n", ""))
    calls: list[tuple[str, list[str]]] = []

    class FakeProcess:
        def __init__(self, command: list[str]) -> None:
            calls.append(("popen", command))
            self.command = command

        def poll(self) -> int | None:
            return None

        def terminate(self) -> None:
            calls.append(("terminate", self.command[:2]))

        def wait(self, timeout: float | None = None) -> int:
            return 0

    def fake_run_sweep(plan, root, resume=False, num_cpus=None, address=None, echo=print):
        calls.append(("sweep", [address, str(resume)]))
        return sweep_module.SweepOutcome(root, [], None, None)

    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "4")
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setattr(slurm_module, "allocation_nodes", lambda: ["node1", "node2", "node3"])
    monkeypatch.setattr(slurm_module, "node_address", lambda node: {"node1": "10.0.0.1"}[node])
    monkeypatch.setattr(raycluster, "_popen", FakeProcess)
    monkeypatch.setattr(raycluster, "_wait_for_port", lambda host, port, process: calls.append(("wait", [host, str(port)])))
    monkeypatch.setattr(sweep_module, "run_sweep", fake_run_sweep)
    slurm_module.SweepDriver()(str(path), None, str(tmp_path / "results"))
    kinds = [kind for kind, _ in calls]
    assert kinds == ["popen", "wait", "popen", "sweep", "terminate", "terminate"]
    port = int(calls[1][1][1])
    from vlpbench.launchers.ports import candidates

    assert port in candidates(4242, offset=1)  # the job's own port (the first free of its candidates)
    assert calls[0][1][1:4] == ["start", "--head", "--block"] and "--node-ip-address=10.0.0.1" in calls[0][1]
    assert f"--port={port}" in calls[0][1] and "--num-cpus=4" in calls[0][1]
    assert calls[2][1][:5] == ["srun", "--nodes=2", "--ntasks=2", "--ntasks-per-node=1", "--nodelist=node2,node3"]
    assert f"--address=10.0.0.1:{port}" in calls[2][1]
    assert calls[3][1] == [f"10.0.0.1:{port}", "False"]
    assert calls[4][1][0] == "srun" and calls[5][1][1] == "start"  # workers stopped first, then the head; no `ray stop`


def test_a_multi_process_run_asks_slurm_for_its_tasks_and_counts_them_in_its_identity(tmp_path: Path) -> None:
    from vlpbench.launchers.slurm import _on_processes, executor_parameters

    config = SlurmConfig(nodes=2, tasks_per_node=4, gpus=4)
    params = executor_parameters(config, "x", nodes=config.nodes, tasks_per_node=config.tasks_per_node)
    assert params["nodes"] == 2 and params["ntasks_per_node"] == 4 and params["gpus_per_node"] == 4
    experiment = load_experiment(tiny_run(tmp_path))
    on_eight = _on_processes(experiment, 8)
    assert [r.world_size for r in on_eight.runs] == [8] and on_eight.runs[0].run_id != experiment.runs[0].run_id
    assert "WORLD_SIZE" not in os.environ  # restored


@pytest.mark.integration
def test_a_run_trains_on_two_slurm_tasks_with_ddp(slurm, tmp_path: Path) -> None:
    from vlpbench.launchers.slurm import submit_runs

    path = tiny_run(tmp_path, name="slurmddp")
    path.write_text(path.read_text().replace("launcher: {time: 10, cpus: 1, array_parallelism: 4}",
                                             "launcher: {time: 10, cpus: 1, tasks_per_node: 2}"))
    jobs = submit_runs(load_experiment(path), tmp_path / "results", echo=lambda _: None)
    assert len(jobs) == 1
    wait_for(jobs)
    assert jobs[0].state == "COMPLETED", jobs[0].stderr()
    run = next((tmp_path / "results" / "slurmddp" / "runs").iterdir())
    provenance = json.loads((run / "provenance.json").read_text())
    assert provenance["distributed"]["world_size"] == 2 and json.loads((run / "status.json").read_text())["state"] == "finished"
    assert "world_size: 2" in (run / "config.yaml").read_text()


# --- two nodes: the private Slurm's second slurmd on the same host ---------------------------------

def _two_nodes() -> None:
    out = subprocess.run(["sinfo", "-h", "-N", "-p", "multi", "-o", "%N"], capture_output=True, text=True)
    if len(set(out.stdout.split())) < 2:
        pytest.skip("no partition 'multi' with two nodes (scripts/slurm/start.sh makes one)")


@pytest.mark.integration
def test_a_sweep_spans_two_slurm_nodes_with_its_own_ray_cluster(slurm, tmp_path: Path) -> None:
    """`launcher: {nodes: 2}`: the driver starts the Ray head on the first node and a worker on the
    second through srun; each trial asks for a whole node's CPUs, so the two run at once, one per node."""
    from vlpbench.launchers.slurm import submit_sweep
    from vlpbench.launchers.sweep_plan import load_sweep

    _two_nodes()
    sweep = SWEEP.replace("max_concurrent: 1", "max_concurrent: 2") + "  resources: {cpu: 2}\n"
    path = tiny_run(tmp_path, name="twonodes", epochs=1, extra=sweep)
    path.write_text(path.read_text().replace("launcher: {time: 10, cpus: 1, array_parallelism: 4}",
                                             "launcher: {time: 10, cpus: 2, nodes: 2, partition: multi}"))
    job = submit_sweep(load_sweep(path), tmp_path / "results", echo=lambda _: None)
    wait_for([job], limit=500)
    log = Path(job.paths.stdout).read_text() + Path(job.paths.stderr).read_text()
    assert job.state == "COMPLETED", log[-3000:]
    assert "Ray: starting the workers: srun --nodes=1" in log and "Ray: stopped the head" in log
    trials = sorted((tmp_path / "results" / "twonodes-sweep" / "runs").glob("trial-*"))
    nodes = {json.loads((t / "provenance.json").read_text())["hardware"]["slurm_node"] for t in trials}
    assert len(trials) == 2 and len(nodes) == 2  # one trial on each node


@pytest.mark.integration
def test_a_run_trains_with_ddp_across_two_slurm_nodes(slurm, tmp_path: Path) -> None:
    from vlpbench.launchers.slurm import submit_runs

    _two_nodes()
    path = tiny_run(tmp_path, name="ddpnodes")
    path.write_text(path.read_text().replace("launcher: {time: 10, cpus: 1, array_parallelism: 4}",
                                             "launcher: {time: 10, cpus: 1, nodes: 2, tasks_per_node: 1, "
                                             "partition: multi}"))
    jobs = submit_runs(load_experiment(path), tmp_path / "results", echo=lambda _: None)
    wait_for(jobs)
    assert jobs[0].state == "COMPLETED", jobs[0].stderr()
    run = next((tmp_path / "results" / "ddpnodes" / "runs").iterdir())
    provenance = json.loads((run / "provenance.json").read_text())
    assert provenance["distributed"]["world_size"] == 2 and provenance["hardware"]["slurm_node"]
    assert json.loads((run / "status.json").read_text())["state"] == "finished"


# --- a shared node: several jobs at once, each preempted ------------------------------------------

def _sacct_times(job_ids: list[str]) -> dict[str, tuple[str, str]]:
    out = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "JobID,Start,End", "-j", ",".join(job_ids)],
                         capture_output=True, text=True, check=True).stdout
    return {line.split("|")[0]: (line.split("|")[1], line.split("|")[2]) for line in out.splitlines() if line}


@pytest.mark.integration
def test_two_sweeps_and_two_ddp_runs_share_the_node_and_each_survives_a_preemption(slurm, tmp_path: Path) -> None:
    """Four jobs submitted at once land on the one node (two Ray sweeps, two 2-task DDP runs): each
    gets its own Ray cluster or rendezvous port, each is preempted once (TERM, then its requeue
    signal: USR2 for one of each kind, HUP for the other), requeued, and resumes to a correct end."""
    from vlpbench.launchers.slurm import interrupt, submit_runs, submit_sweep
    from vlpbench.launchers.sweep_plan import load_sweep

    results = tmp_path / "results"
    sweeps, runs = [], []
    for name, signal_name in (("sharedsweepa", "USR2"), ("sharedsweepb", "HUP")):
        path = tiny_run(tmp_path, name=name, epochs=1, extra=SWEEP)
        path.write_text(path.read_text().replace("launcher: {time: 10, cpus: 1, array_parallelism: 4}",
                                                 f"launcher: {{time: 10, cpus: 1, signal: {signal_name}}}"))
        sweeps.append((name, signal_name, submit_sweep(load_sweep(path), results, echo=lambda _: None)))
    for name, signal_name in (("sharedddpa", "USR2"), ("sharedddpb", "HUP")):
        path = tiny_run(tmp_path, name=name, pretrain_size=256, epochs=4)
        path.write_text(path.read_text().replace("launcher: {time: 10, cpus: 1, array_parallelism: 4}",
                                                 f"launcher: {{time: 10, cpus: 1, tasks_per_node: 2, signal: {signal_name}}}"))
        [job] = submit_runs(load_experiment(path), results, echo=lambda _: None)
        runs.append((name, signal_name, job))
    jobs = [job for _, _, job in sweeps + runs]

    # preempt each once it has something to resume from: a sweep after its first finished trial,
    # a run after its first epoch checkpoint
    pending = {job.job_id: (name, signal_name, job) for name, signal_name, job in sweeps + runs}
    deadline = time.time() + 600
    while pending:
        assert time.time() < deadline, f"not all jobs got to their first checkpoint: {sorted(pending)}"
        for job_id, (name, signal_name, job) in list(pending.items()):
            folder = results / (name + "-sweep" if "sweep" in name else name) / "runs"
            if "sweep" in name:
                ready = any(json.loads(p.read_text()).get("state") == "finished" for p in folder.glob("*/status.json"))
            else:
                ready = bool(list(folder.glob("*/checkpoints/epoch-000.pt")))
            assert not job.done(), f"{name} ended before it could be preempted: {job.stderr()}"
            if ready:
                interrupt(job, signal_name)
                del pending[job_id]
        time.sleep(0.5)
    wait_for(jobs, limit=900, release_requeued=True)

    # all four ran at once on the one node
    times = _sacct_times([job.job_id for job in jobs])
    assert max(start for start, _ in times.values()) < min(end for _, end in times.values()), times
    for name, signal_name, job in sweeps + runs:
        log = Path(job.paths.stdout).read_text() + Path(job.paths.stderr).read_text()
        assert job.state == "COMPLETED", f"{name}: {log[-3000:]}"
        assert f"Caught signal SIG{signal_name}" in log and requeued(log), log[-3000:]  # its own signal
    # the sweeps: each its own Ray cluster (own address and temp dir), both trials finished, resumed
    addresses = set()
    for name, _, job in sweeps:
        log = Path(job.paths.stdout).read_text() + Path(job.paths.stderr).read_text()
        started = [line for line in log.splitlines() if "Ray: started a local cluster at" in line]
        assert len(started) == 2 and f"vlpbench-ray-{job.job_id}" in started[0], started  # once per start
        addresses.add(started[0].split(" at ")[1].split()[0])
        summary = json.loads((results / f"{name}-sweep" / "sweep.json").read_text())
        assert [t["state"] for t in summary["trials"]] == ["finished", "finished"], summary
        assert (results / f"{name}-sweep" / "best.yaml").is_file()
        assert not Path(f"/tmp/vlpbench-ray-{job.job_id}").exists()  # its temp dir went with it
    assert len(addresses) == 2
    # the runs: resumed, not restarted; every step once; each its own rendezvous port, recorded
    rendezvous = set()
    for name, _, job in runs:
        [run] = list((results / name / "runs").iterdir())
        provenance = json.loads((run / "provenance.json").read_text())
        status = json.loads((run / "status.json").read_text())
        assert status["state"] == "finished" and status["restarts"] >= 1
        assert provenance["pretrain"]["resumed_from_epoch"] >= 1
        assert provenance["distributed"]["world_size"] == 2
        assert provenance["distributed"]["rendezvous"] == status["rendezvous"]
        port = int(status["rendezvous"].rsplit(":", 1)[1])
        assert 1024 <= port < 32768  # below the ephemeral range
        rendezvous.add(port)
        steps = [r["step"] for r in json.loads((run / "history.json").read_text())["steps"]]
        assert steps == list(range(len(steps))) and {r["epoch"] for r in json.loads(
            (run / "history.json").read_text())["steps"]} == {0, 1, 2, 3}
    assert len(rendezvous) == 2
