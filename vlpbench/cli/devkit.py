"""``vlpbench new-plugin`` and ``check-plugin``: the plugin author's kit."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any



def add_new_plugin(sub: Any) -> None:
    scaffold = sub.add_parser("new-plugin", help="write a ready-to-install plugin distribution with example components")
    scaffold.add_argument("name", help="plugin name: lowercase, e.g. mymethod (components become mymethod.*)")
    scaffold.add_argument("--kind", action="append", choices=["positive_miner", "negative_weighting", "local_head", "auxiliary",
                                                                "global_loss", "task", "image_encoder", "text_encoder",
                                                                "dataset"],
                          help="component kinds to scaffold (repeatable; default: all)")
    scaffold.add_argument("--dest", default=".", help="folder to write vlpbench-NAME into (default: here)")
    scaffold.set_defaults(handler=cmd_new_plugin)


def add_check_plugin(sub: Any) -> None:
    check = sub.add_parser("check-plugin", help="run the conformance suite on an installed plugin (exit 1 on a failure)")
    check.add_argument("plugin", help="entry-point name (e.g. fane) or distribution name (e.g. vlpbench-fane)")
    check.set_defaults(handler=cmd_check_plugin)


def cmd_new_plugin(args: argparse.Namespace) -> int:
    from vlpbench.devkit.scaffold import new_plugin

    root = new_plugin(args.name, Path(args.dest), args.kind)
    print(f"wrote {root}: install it with `pip install -e {root}`, then `vlpbench check-plugin {args.name}`, "
          f"`pytest {root / 'tests'}` and `vlpbench run {root / 'experiments' / (args.name + '.yaml')}`.")
    return 0


def cmd_check_plugin(args: argparse.Namespace) -> int:
    from vlpbench.devkit.conformance import check_plugin, format_results

    results = check_plugin(args.plugin)
    print(format_results(results))
    return 1 if any(r.status == "FAIL" for r in results) else 0
