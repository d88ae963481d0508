"""``vlpbench run``, ``sweep``, ``status`` and ``eval``: pretraining, evaluating and searching, here or on Slurm."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from vlpbench.cli.options import add_settings, experiment_file, results_folder, seed_list, settings_of
from vlpbench.core.errors import Terminated, UserError, clear_termination, request_termination


def add_run(sub: Any) -> None:
    run = sub.add_parser("run", help="pretrain and evaluate every run of an experiment, then print the leaderboard")
    run.add_argument("file", help="experiment YAML file, or the name of a shipped one (quickstart, ablation, ...; "
                                  "`vlpbench init --list`)")
    run.add_argument("--variant", action="append", help="only this variant (repeatable)")
    run.add_argument("--seeds", type=seed_list, help="override the file's seeds, e.g. '0' or '0,1,2'")
    run.add_argument("--results", default="results", help="results root (default: results/)")
    run.add_argument("--rerun-stale", action="store_true", help="rerun finished runs made under other versions")
    run.add_argument("--no-reuse", action="store_true",
                     help="pretrain even when a finished run differs from this one only in its tasks")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument("--jobs", type=int, default=1, metavar="N",
                     help="N processes of one thread each take turns over the runs (local launcher; faster than one "
                          "process with N threads on a CPU); the board is written when all are done")
    run.add_argument("--helper", action="store_true", help=argparse.SUPPRESS)  # a --jobs helper: no board
    add_settings(run)
    run.add_argument("--report-to", metavar="TRACKERS",
                     help="log every run to these trackers while it trains: tensorboard, mlflow, wandb (comma-"
                          "separated; 'none' for none); overrides the file's report_to")
    run.add_argument("--dry-run", action="store_true",
                     help="print which runs are finished, stale, to resume or new (with a time estimate from the "
                          "finished runs) and stop; nothing is run or written")
    run.add_argument("--launcher", default="local", metavar="NAME",
                     help="a launcher component: local: in this process (default); slurm: one job array through "
                          "submitit, settings from the file's launcher: section, returns at once (see `vlpbench "
                          "status`); or a plugin's (`vlpbench plugins --kind launcher`)")
    run.set_defaults(handler=cmd_run)


def add_sweep(sub: Any) -> None:
    sweep = sub.add_parser("sweep", help="search hyperparameters with Ray Tune (the file's sweep: section); "
                                         "trials score the validation split")
    sweep.add_argument("file", help="experiment YAML file with a sweep: section (or a shipped experiment's name)")
    sweep.add_argument("--variant", help="the variant to search around (needed when the file has several)")
    sweep.add_argument("--results", default="results", help="results root (default: results/); trials land in "
                                                             "<results>/<experiment>-sweep/")
    sweep.add_argument("--resume", action="store_true", help="continue an interrupted sweep")
    sweep.add_argument("--launcher", default="local", metavar="NAME",
                       help="local: Ray in this process (default); slurm: the Tune driver in a Slurm allocation; or "
                            "a plugin's launcher that can run sweeps")
    sweep.add_argument("--num-cpus", type=int, help="CPUs Ray may use here (default: all this process may use)")
    sweep.add_argument("--address", help="join this running Ray cluster (HOST:PORT, or 'auto' for the one last started "
                                         "here) instead of starting one of the sweep's own (the default, also "
                                         "when RAY_ADDRESS is set)")
    add_settings(sweep)
    sweep.set_defaults(handler=cmd_sweep)


def add_status(sub: Any) -> None:
    status = sub.add_parser("status", help="state of the Slurm jobs submitted from here (runs and sweeps), with "
                                           "log paths of failed ones; rebuilds boards of finished submissions")
    status.add_argument("--results", default="results", help="results root (default: results/)")
    status.set_defaults(handler=cmd_status)


def add_eval(sub: Any) -> None:
    evaluate = sub.add_parser("eval", help="score a checkpoint (a run directory, a timm image encoder file, or a "
                                           "published checkpoint with --format) with an experiment's tasks, "
                                           "without pretraining")
    evaluate.add_argument("checkpoint", help="run directory (results/<exp>/runs/<id>) or timm weights file")
    evaluate.add_argument("--experiment", required=True, help="experiment file whose data and tasks define the protocol")
    evaluate.add_argument("--variant", help="variant of the experiment to take the tasks from (default: the first)")
    evaluate.add_argument("--arch", help="timm architecture of a weights file (e.g. resnet50)")
    evaluate.add_argument("--label", required=True, help="row name on the leaderboard")
    evaluate.add_argument("--format", choices=["mgca", "gloria", "benchx", "timm", "lightning"],
                          help="layout of a published checkpoint file: where the image backbone's keys are "
                               "(needs --arch); reports what did not load, refuses a mostly random backbone")
    evaluate.add_argument("--prefix", help="the image backbone's key prefix in the file (as BenchX's pretrained_prefix), "
                                           "e.g. img_encoder_q.model.")
    evaluate.add_argument("--strip", action="append", help="also remove this from the start of keys (repeatable), "
                                                           "e.g. module.")
    evaluate.add_argument("--separate-row", action="store_true",
                          help="allow a --label that is a variant of the experiment: the result gets its own row "
                               "'<label> [eval]' instead of being refused (it is never pooled with the variant's seeds)")
    evaluate.add_argument("--results", default="results", help="results root (default: results/)")
    evaluate.set_defaults(handler=cmd_eval)


def cmd_run(args: argparse.Namespace) -> int:
    from vlpbench.engine.distributed import process_group

    results_folder(args.results)
    with _TerminateToInterrupt(), process_group() as world:  # several processes under torchrun (or Slurm): DDP
        return _run_experiment(args, main=world.rank == 0)


class _TerminateToInterrupt:
    """While running: SIGTERM raises :class:`~vlpbench.core.errors.Terminated`, so the current run is marked
    ``interrupted`` (not left ``running``) and the command exits 143."""

    def __enter__(self) -> None:
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, self._raise)

    @staticmethod
    def _raise(signum: int, frame: object) -> None:
        request_termination()  # raised again at the next step or run if this raise lands in a finaliser
        raise Terminated("SIGTERM")

    def __exit__(self, *exc: object) -> None:
        clear_termination()
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)


def _start_helpers(args: argparse.Namespace, world: int) -> Any:
    """``--jobs N``: N − 1 helper processes and one thread here (None for one job)."""
    if args.jobs < 1:
        raise UserError(f"--jobs {args.jobs}: give the number of processes, 1 or more.")
    if args.jobs == 1 or args.helper:
        return None
    if world > 1:
        raise UserError(f"--jobs {args.jobs} with a multi-process experiment (world size {world}): the processes "
                        "already share each run; drop --jobs or run the experiment on one process.")
    from vlpbench.cli.jobs import Helpers

    return Helpers(args, args.jobs - 1)


def _run_experiment(args: argparse.Namespace, main: bool) -> int:
    from vlpbench import api
    from vlpbench.engine.rundir import experiment_dir

    experiment = api.load(args.file, seeds=args.seeds, variants=args.variant, settings=settings_of(args))
    root = Path(args.results)
    if args.dry_run:
        from vlpbench.engine.plan import format_plan

        if main:
            print(format_plan(experiment, api.plan(experiment, root, rerun_stale=args.rerun_stale,
                                                   reuse_pretraining=not args.no_reuse)))
        return 0
    if args.launcher != "local":  # a launcher component (slurm, or a plugin's): it submits and returns
        from vlpbench.launchers import launcher

        launcher(args.launcher).launch(experiment, root, rerun_stale=args.rerun_stale)
        return 0
    main = main and not args.helper  # a --jobs helper runs silently and leaves the board to its parent
    say = print if main else (lambda *a, **k: None)
    world = experiment.runs[0].world_size if experiment.runs else 1
    say(f"experiment '{experiment.name}': {len(experiment.runs)} run(s) "
        f"({len(experiment.variants)} variant(s) × seeds {sorted({r.seed for r in experiment.runs})})"
        + (f" on {world} processes" if world > 1 else ""))
    if main:
        from vlpbench.board.current import superseded_warnings

        for line in superseded_warnings(experiment, experiment_dir(root, experiment.name)):
            print(line)
    report_to = _report_to(args, experiment)
    helpers = _start_helpers(args, world)
    try:
        result = api.run(experiment, root, rerun_stale=args.rerun_stale, progress=not args.quiet,
                         reuse_pretraining=not args.no_reuse, report_to=report_to, echo=say if args.helper else print,
                         before_board=helpers.wait if helpers else None, board=not args.helper)
    finally:
        if helpers:
            helpers.stop()
    outcome = result.outcome
    if helpers:
        from vlpbench.cli.jobs import failed_helpers

        note = failed_helpers(helpers.wait())
        if note:
            print(note, file=sys.stderr)
    if not main:
        return 2 if outcome.failed else 0
    print()
    print(result.board)
    print(f"written: {experiment_dir(root, experiment.name)}/leaderboard.{{md,csv,tex,html}} and leaderboard_full.md")
    if outcome.failed:
        print(f"{len(outcome.failed)} run(s) failed or are corrupt; their status.json (and run.log) or the message "
              "above says why. The other results are kept.", file=sys.stderr)
        return 2
    return 0


def _report_to(args: argparse.Namespace, experiment: Any) -> list[str]:
    """The trackers of this command: ``--report-to`` (``none`` for none) over the file's ``report_to``."""
    from vlpbench.engine.tracking import check_backends

    if args.report_to is None:
        names = list(experiment.file.report_to)
    else:
        names = [n.strip() for n in args.report_to.split(",") if n.strip() and n.strip() != "none"]
    check_backends(names)
    return names


def cmd_sweep(args: argparse.Namespace) -> int:
    from vlpbench.launchers.sweep_plan import load_sweep

    args.file = experiment_file(args.file)
    plan = load_sweep(args.file, args.variant, settings=settings_of(args))
    root = Path(args.results)
    if args.launcher != "local":
        from vlpbench.launchers import launcher

        if args.address:
            raise UserError(f"--address joins a running Ray cluster from here; with --launcher {args.launcher} the "
                            "sweep starts its own cluster where the launcher puts it. Use one or the other.")
        launcher(args.launcher, sweep=True).launch_sweep(plan, root, resume=args.resume)
        return 0
    from vlpbench.launchers.sweep import run_sweep

    outcome = run_sweep(plan, root, resume=args.resume, num_cpus=args.num_cpus, address=args.address)
    if outcome.interrupted:
        return 130
    return 0 if outcome.best is not None else 2


def cmd_status(args: argparse.Namespace) -> int:
    from vlpbench.launchers.jobs import show_status

    return show_status(Path(args.results), echo=print)


def cmd_eval(args: argparse.Namespace) -> int:
    from vlpbench import api
    from vlpbench.engine.rundir import experiment_dir
    from vlpbench.board.leaderboard import write_leaderboard

    root = results_folder(args.results)

    key_map = {k: v for k, v in {"format": args.format, "prefix": args.prefix, "strip": args.strip}.items() if v}
    run = api.evaluate(args.checkpoint, args.experiment, args.label, root, arch=args.arch, variant=args.variant,
                       key_map=key_map or None, separate_row=args.separate_row)
    print(f"evaluated '{args.checkpoint}' as '{args.label}' -> {run.path}")
    folder = run.path.parent.parent
    print()
    print(write_leaderboard(experiment_dir(root, folder.name)))
    return 0
