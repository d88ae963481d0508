"""``--launcher slurm``: runs as one Slurm job array, sweeps as one allocation, through submitit.

- ``vlpbench run FILE --launcher slurm`` submits every unfinished run of the experiment as one
  job array (one run per array task, at most ``launcher.array_parallelism`` at once). A task that
  is preempted or reaches its time limit is requeued by submitit (:class:`RunTask` is
  checkpointable) and resumes from its run's last epoch checkpoint.
- ``vlpbench sweep FILE --launcher slurm`` submits the Ray Tune driver (:class:`SweepDriver`)
  into an allocation of ``launcher.nodes`` nodes: the driver starts a Ray cluster of its own inside
  it (:mod:`vlpbench.launchers.raycluster`: ``address="local"`` on one node; a head on the first node
  and workers started with ``srun`` on the others), and the sweep runs as it does locally. A
  requeued driver resumes the sweep.

Safe on a shared node: a multi-process run's DDP rendezvous port and a sweep's Ray ports are
derived from the Slurm job and checked free (:mod:`vlpbench.launchers.ports`), so jobs landing on
one node never meet; the requeue signal is ``launcher.signal`` (USR2 by default, as in submitit),
sent by Slurm ``signal_delay_s`` before the time limit and by a preemption.

Submission returns at once; ``vlpbench status`` shows the jobs. submitit is imported only here,
and this module is imported only when Slurm is used.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from vlpbench.config.loader import Experiment, RunSpec
from vlpbench.config.schema import SlurmConfig
from vlpbench.core.errors import UserError

try:
    import submitit
    from submitit.helpers import Checkpointable
except ImportError:  # the class below still imports; using it says what to install
    submitit = None
    Checkpointable = object


def _require_slurm() -> None:
    if submitit is None:
        raise UserError("--launcher slurm needs submitit: pip install 'vlpbench[slurm]'.")
    if shutil.which("sbatch") is None:
        raise UserError("--launcher slurm needs the Slurm client commands (sbatch, sacct) on PATH and a reachable "
                        "controller; run on a Slurm login node, or use --launcher local.")


def submission_folder(results_root: Path, experiment: str, kind: str) -> Path:
    """A fresh folder per submission (Slurm job IDs restart when its state is wiped, so a reused
    folder could hand back an old job's result)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    folder = results_root.resolve() / experiment / "slurm" / f"{stamp}-{kind}-{secrets.token_hex(3)}"
    folder.mkdir(parents=True)
    return folder


#: submitit reads the requeue signal from this variable in the job (its default is USR2).
SIGNAL_VARIABLE = "SUBMITIT_PREEMPT_SIGNAL"


def signal_delay_s(config: SlurmConfig) -> int:
    """Seconds between the requeue signal and the time limit: a tenth of the limit, 10 to 90 s."""
    return min(90, max(10, config.time * 60 // 10))


def executor_parameters(config: SlurmConfig, name: str, nodes: int = 1, tasks_per_node: int = 1) -> dict[str, Any]:
    """The ``launcher:`` section as submitit ``SlurmExecutor`` parameters. The requeue signal is
    ``launcher.signal`` on both ends: Slurm sends it (``#SBATCH --signal``) and the job's submitit
    listens for it (``SUBMITIT_PREEMPT_SIGNAL``, exported before the tasks start)."""
    params: dict[str, Any] = {
        "job_name": name, "time": config.time, "cpus_per_task": config.cpus, "nodes": nodes,
        "ntasks_per_node": tasks_per_node, "array_parallelism": config.array_parallelism,
        "additional_parameters": {**config.sbatch, "signal": f"{config.signal}@{signal_delay_s(config)}"},
        "setup": [f"export {SIGNAL_VARIABLE}={config.signal}", *config.setup],
        "signal_delay_s": signal_delay_s(config),
    }
    if config.partition:
        params["partition"] = config.partition
    if config.gpus:
        params["gpus_per_node"] = config.gpus
    if config.mem_gb:
        params["mem"] = f"{int(config.mem_gb * 1024)}MB"
    return params


def _executor(folder: Path, config: SlurmConfig, name: str, nodes: int = 1, tasks_per_node: int = 1,
              srun_args: list[str] | None = None) -> Any:
    executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=config.max_requeues)
    executor.update_parameters(**executor_parameters(config, name, nodes, tasks_per_node),
                               **({"srun_args": srun_args} if srun_args else {}))
    return executor


def interrupt(job: Any, signal: str, preempt: bool = True, settle: float = 2.0) -> None:
    """What Slurm does to ``job`` at a preemption (TERM, then ``signal``) or before its time limit
    (``signal`` alone): for tests and for operators (submitit's own ``_interrupt`` sends the signal
    of the submitting process, not the job's). The signal follows the TERM after ``settle`` seconds,
    as Slurm's grace time separates them: sent back to back, a TERM that slurmd delivers late on a
    loaded node can reach the ``scontrol requeue`` the signal's handler has just started, and kill it."""
    if preempt:
        subprocess.run(["scancel", job.job_id, "--signal", "TERM"], check=True)
        time.sleep(settle)
    subprocess.run(["scancel", job.job_id, "--signal", signal], check=True)


def rendezvous_file(folder: Path, job_id: str) -> Path:
    """Where rank 0 publishes the run's rendezvous port to the other ranks: one file per job and
    per start (a requeued job starts again with the same id and must not read the last one)."""
    return folder / f"{job_id}_rendezvous_{os.environ.get('SLURM_RESTART_COUNT', '0')}.json"


def export_rendezvous(limit: float = 600.0) -> str:
    """Export the distributed environment of this Slurm task (RANK, WORLD_SIZE, LOCAL_RANK,
    MASTER_ADDR, MASTER_PORT) with a rendezvous port of this job's own: rank 0 takes the job's port
    (:func:`vlpbench.launchers.ports.candidates`, derived from ``SLURM_JOB_ID``, below the
    ephemeral range) or the next free one and publishes it in the submission folder; the other
    ranks read it there. A ``MASTER_PORT`` inherited from the submitting shell is ignored (submitit
    would reuse it for every array task, and tasks on one node would collide). Returns
    ``host:port``."""
    from vlpbench.engine.files import read_json, write_json
    from vlpbench.launchers.ports import candidates, first_free, slurm_job_id

    environment = submitit.JobEnvironment()
    handshake = rendezvous_file(Path(environment.paths.folder), environment.job_id)
    if environment.global_rank == 0:
        port = first_free(candidates(slurm_job_id() or os.getpid()))
        write_json(handshake, {"master_addr": environment.hostnames[0], "master_port": port,
                               "job": environment.job_id})
    else:
        deadline = time.time() + limit
        while not handshake.is_file():
            if time.time() > deadline:
                raise UserError(f"rank {environment.global_rank} waited {limit:.0f} s for rank 0's rendezvous port "
                                f"in {handshake}; see rank 0's log")
            time.sleep(0.2)
        port = int(read_json(handshake)["master_port"])
    os.environ["MASTER_PORT"] = str(port)
    distributed = submitit.helpers.TorchDistributedEnvironment()  # reads MASTER_PORT
    distributed.export(set_cuda_visible_devices=False, overwrite=True)
    return f"{distributed.master_addr}:{distributed.master_port}"


class RunTask(Checkpointable):
    """One run in one array task. Checkpointable: on a timeout or preemption submitit calls
    :meth:`checkpoint` (inherited: resubmit the same call) and requeues the task, which then resumes
    from the run's last epoch checkpoint.

    With several Slurm tasks per run (``tasks_per_node`` × ``nodes``), every task calls this; the
    distributed environment is exported from Slurm's (:func:`export_rendezvous`: a port of the
    job's own, recorded in ``status.json`` and ``provenance.json``) and the run trains with
    DistributedDataParallel; rank 0 writes."""

    def __call__(self, spec: RunSpec, results_root: str, rerun_stale: bool = False) -> str:
        """Run ``spec`` exactly as ``vlpbench run`` runs each of its runs (:func:`run_one`: the run's
        lock, leftovers cleaned, a stale run replaced only once its rerun has finished, failures
        recorded in ``status.json``); return its state. A failed run raises, so Slurm reports the
        array task as failed."""
        from vlpbench.engine.distributed import process_group
        from vlpbench.engine.rundir import run_dir
        from vlpbench.engine.runner import run_one

        run = run_dir(Path(results_root), spec.experiment, spec.run_id)
        status: dict[str, Any] = {}
        if int(os.environ.get("SLURM_NTASKS", "1")) > 1:
            status["rendezvous"] = export_rendezvous()
        job = os.environ.get("SLURM_ARRAY_JOB_ID", os.environ.get("SLURM_JOB_ID", "?"))
        status.update(slurm_job=f"{job}_{os.environ.get('SLURM_ARRAY_TASK_ID', '0')}",
                      restarts=int(os.environ.get("SLURM_RESTART_COUNT", "0")))
        with process_group():
            outcome = run_one(spec, run, f"{spec.variant} seed {spec.seed}", rerun_stale=rerun_stale,
                              progress=False, status=status)
        if outcome.state in ("failed", "corrupt"):
            raise UserError(f"{spec.variant} seed {spec.seed} {outcome.state}: {outcome.message}")
        return outcome.state


def _on_processes(experiment: Experiment, world: int) -> Experiment:
    """The experiment's runs as they are identified on ``world`` processes."""
    from vlpbench.config.loader import load_experiment

    previous = os.environ.get("WORLD_SIZE")
    os.environ["WORLD_SIZE"] = str(world)
    try:
        return load_experiment(experiment.path, seeds=sorted({r.seed for r in experiment.runs}),
                               variants=experiment.variants if experiment.file.variants else None,
                               settings=experiment.settings)
    finally:
        if previous is None:
            os.environ.pop("WORLD_SIZE", None)
        else:
            os.environ["WORLD_SIZE"] = previous


def submit_runs(experiment: Experiment, results_root: Path, rerun_stale: bool = False,
                echo: Callable[[str], None] = print) -> list[Any]:
    """Submit the unfinished runs of ``experiment`` as one job array; return the submitit jobs."""
    from vlpbench.engine.rundir import experiment_dir, run_dir
    from vlpbench.engine.rundir import is_stale
    from vlpbench.launchers.jobs import write_record

    _require_slurm()
    config = experiment.file.launcher or SlurmConfig()
    world = config.nodes * config.tasks_per_node
    if world > 1 and any(spec.world_size != world for spec in experiment.runs):
        experiment = _on_processes(experiment, world)  # the runs' identities include the process count
    todo: list[RunSpec] = []
    for spec in experiment.runs:
        run = run_dir(results_root, experiment.name, spec.run_id)
        if run.finished and not (rerun_stale and is_stale(run)):
            echo(f"{spec.variant} seed {spec.seed}: finished earlier, skipped ({run.path})")
            continue
        todo.append(spec)
    if not todo:
        echo("every run has finished; nothing to submit.")
        return []
    folder = submission_folder(results_root, experiment.name, "run")
    executor = _executor(folder, config, f"vlpbench-{experiment.name}", nodes=config.nodes,
                         tasks_per_node=config.tasks_per_node)
    root = str(results_root.resolve())
    jobs = []
    with executor.batch():
        for spec in todo:
            jobs.append(executor.submit(RunTask(), spec, root, rerun_stale))
    record = {
        "kind": "run", "experiment": experiment.name, "file": str(experiment.path.resolve()),
        "submitted": time.strftime("%Y-%m-%d %H:%M:%S"), "board_dir": str(experiment_dir(results_root.resolve(), experiment.name)),
        "variants": experiment.variants, "baseline": experiment.file.baseline,
        "planned": [[r.variant, r.seed, r.config_hash] for r in experiment.runs],
        "jobs": [{"job_id": job.job_id, "label": f"{spec.variant} seed {spec.seed}",
                  "run_dir": str(run_dir(results_root.resolve(), experiment.name, spec.run_id).path),
                  "stdout": str(job.paths.stdout), "stderr": str(job.paths.stderr)} for job, spec in zip(jobs, todo)],
    }
    write_record(folder, record)
    array = jobs[0].job_id.split("_")[0]
    echo(f"submitted {len(jobs)} run(s) of '{experiment.name}' as Slurm job array {array} "
         f"(at most {config.array_parallelism} at once; logs in {folder}).")
    echo("`vlpbench status` shows the jobs; results land in "
         f"{experiment_dir(results_root, experiment.name)}/runs/ as they finish.")
    return jobs


def allocation_nodes() -> list[str]:
    """Names of this Slurm job's nodes, the first being the one this runs on."""
    nodelist = os.environ.get("SLURM_JOB_NODELIST", "")
    if not nodelist:
        return [socket.gethostname()]
    out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, check=True)
    return out.stdout.split()


def node_address(node: str) -> str:
    """The IP address Slurm reaches ``node`` at (its ``NodeAddr``; the name resolved when Slurm does
    not say, as on clusters whose node names are host names)."""
    out = subprocess.run(["scontrol", "show", "node", "-o", node], capture_output=True, text=True, check=False)
    for field in out.stdout.split():
        if field.startswith("NodeAddr="):
            address = field.split("=", 1)[1]
            try:
                return socket.gethostbyname(address)
            except OSError:
                break
    return socket.gethostbyname(node)


class SweepDriver(Checkpointable):
    """The Ray Tune driver inside a Slurm allocation (one Slurm task on the first node, so that it
    receives the requeue signal). Requeued, it resumes the sweep."""

    def __call__(self, file: str, variant: str | None, results_root: str, resume: bool = False,
                 settings: dict[str, Any] | None = None) -> str:
        """Drive the sweep on a worker thread (:func:`~vlpbench.launchers.responsive.call_responsively`),
        so that the requeue signal is handled at once even while Ray blocks the driver."""
        from vlpbench.launchers.responsive import call_responsively

        return call_responsively(self.drive, file, variant, results_root, resume, settings)

    def drive(self, file: str, variant: str | None, results_root: str, resume: bool = False,
              settings: dict[str, Any] | None = None) -> str:
        """Start the allocation's Ray cluster, run (or resume) the sweep; return the best trial's file."""
        from vlpbench.launchers.raycluster import multinode_cluster
        from vlpbench.launchers.sweep import TUNE_NAME, run_sweep
        from vlpbench.launchers.sweep_plan import load_sweep

        plan = load_sweep(file, variant, settings)
        root = Path(results_root)
        resume = resume or (root / plan.name / TUNE_NAME / plan.name).is_dir()
        cpus = int(os.environ.get("SLURM_CPUS_PER_TASK", 0)) or len(os.sched_getaffinity(0))
        gpus = len([g for g in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if g])
        nodes = allocation_nodes()
        if len(nodes) == 1:
            outcome = run_sweep(plan, root, resume=resume, num_cpus=cpus)
            return str(outcome.best_file or "")
        config = plan.experiment.file.launcher or SlurmConfig()
        ray = str(Path(sys.executable).with_name("ray"))
        with multinode_cluster(nodes, node_address(nodes[0]), cpus, gpus, config.ray_port, ray,
                               echo=lambda line: print(line, flush=True)) as address:
            outcome = run_sweep(plan, root, resume=resume, address=address)
        return str(outcome.best_file or "")


def submit_sweep(plan: Any, results_root: Path, resume: bool = False, echo: Callable[[str], None] = print) -> Any:
    """Submit the sweep's driver into a Slurm allocation; return the submitit job."""
    from vlpbench.engine.rundir import experiment_dir
    from vlpbench.launchers.jobs import write_record

    from vlpbench.launchers.sweep import check_sweep_state

    _require_slurm()
    check_sweep_state(plan, results_root, resume)
    config = plan.experiment.file.launcher or SlurmConfig()
    folder = submission_folder(results_root, plan.name, "sweep")
    # One Slurm task on the first node (a job step, so that Slurm's requeue signal reaches it; a
    # process started by the batch script itself gets none): it starts Ray, and Ray's workers on
    # the other nodes through srun.
    executor = _executor(folder, config, f"vlpbench-{plan.name}", nodes=config.nodes,
                         srun_args=["--nodes=1", "--ntasks=1"])
    job = executor.submit(SweepDriver(), str(plan.path.resolve()), plan.variant, str(results_root.resolve()), resume,
                           plan.settings)
    write_record(folder, {
        "kind": "sweep", "experiment": plan.name, "file": str(plan.path.resolve()),
        "submitted": time.strftime("%Y-%m-%d %H:%M:%S"), "board_dir": str(experiment_dir(results_root.resolve(), plan.name)),
        "jobs": [{"job_id": job.job_id, "label": f"sweep driver ({config.nodes} node(s))", "run_dir": "",
                  "stdout": str(job.paths.stdout), "stderr": str(job.paths.stderr)}],
    })
    echo(f"submitted the sweep of '{plan.experiment.name}' as Slurm job {job.job_id} ({config.nodes} node(s), "
         f"{config.cpus} CPU(s) each; log {job.paths.stdout}).")
    echo(f"`vlpbench status` shows it; trials land in {experiment_dir(results_root, plan.name)}/runs/.")
    return job


class SlurmLauncher:
    """The ``slurm`` launcher component: ``launch`` and ``launch_sweep`` submit and return at once;
    the settings come from the experiment file's ``launcher:`` section."""

    Params = SlurmConfig

    def __init__(self, params: SlurmConfig | None = None, context: Any = None) -> None:
        self.params = params

    def launch(self, experiment: Experiment, results_root: Path, **options: Any) -> list[Any]:
        return submit_runs(experiment, results_root, rerun_stale=options.get("rerun_stale", False))

    def launch_sweep(self, plan: Any, results_root: Path, resume: bool = False) -> Any:
        return submit_sweep(plan, results_root, resume=resume)
