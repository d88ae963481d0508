"""The ``vlpbench`` command line.

Each command lives in a module of this package with its arguments (``add_<command>``) and its
handler (``cmd_<command>``): :mod:`.running` (run, sweep, status, eval), :mod:`.inspecting` (init,
export, validate, schema, plugins, describe), :mod:`.data`, :mod:`.devkit`, :mod:`.board`.
Start-up stays light: only argparse is imported here, and each command imports what it needs
(torch, pandas, ...) when it runs, so ``vlpbench --help`` and ``vlpbench plugins`` are fast.
User mistakes (:class:`~vlpbench.core.errors.UserError`) print one paragraph and exit 2; anything
else is a bug and shows its traceback (exit 1).
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
import warnings
from typing import Callable, Sequence

from vlpbench import __version__
from vlpbench.cli import board, data, devkit, inspecting, running
from vlpbench.core.errors import EnvironmentProblem, Terminated, UserError, environment_message

#: The commands, in the order ``vlpbench --help`` lists them.
COMMANDS = (
    ("run", running.add_run),
    ("sweep", running.add_sweep),
    ("init", inspecting.add_init),
    ("status", running.add_status),
    ("eval", running.add_eval),
    ("export", inspecting.add_export),
    ("validate", inspecting.add_validate),
    ("schema", inspecting.add_schema),
    ("plugins", inspecting.add_plugins),
    ("describe", inspecting.add_describe),
    ("data", data.add_data),
    ("mining-quality", data.add_mining_quality),
    ("new-plugin", devkit.add_new_plugin),
    ("check-plugin", devkit.add_check_plugin),
    ("leaderboard", board.add_leaderboard),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vlpbench", description="Benchmark registry for medical vision-language pretraining.")
    parser.add_argument("--version", action="version", version=f"vlpbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for _, add in COMMANDS:
        add(sub)
    return parser


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail on the closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def _format_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int, line: str | None = None) -> str:
    return f"warning: {message}\n"


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    previous = warnings.formatwarning
    warnings.formatwarning = _format_warning
    try:
        code = handler(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the handling below, not at interpreter exit
        return code
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted: finished runs are kept; rerun the same command to resume.", file=sys.stderr)
        return 130
    except Terminated:
        print("terminated (SIGTERM): the current run is marked interrupted, finished runs are kept; rerun the "
              "same command to resume.", file=sys.stderr)
        return 143
    except BrokenPipeError:  # `vlpbench plugins | head`: the reader is gone, which is not an error
        _silence_stdout()
        return 141
    except Exception as exc:
        message = environment_message(exc)
        if message is not None:
            print(f"error: {message}", file=sys.stderr)
            return EnvironmentProblem.exit_code
        traceback.print_exc()
        print("\nThis is a bug in vlpbench (not a problem with your input); please report it with the "
              "traceback above.", file=sys.stderr)
        return 1
    finally:
        warnings.formatwarning = previous

