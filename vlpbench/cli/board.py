"""``vlpbench leaderboard``: the board rebuilt from run directories."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from vlpbench.core.errors import ConfigError, did_you_mean


def add_leaderboard(sub: Any) -> None:
    board = sub.add_parser("leaderboard", help="rebuild leaderboard tables from run directories")
    board.add_argument("dirs", nargs="+", help="experiment results folders (results/<experiment>); several merge")
    board.add_argument("--baseline", help="variant to compare against (default: the experiment file's baseline)")
    board.add_argument("--out", help="folder for the board files (default: the first results folder)")
    board.set_defaults(handler=cmd_leaderboard)


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from vlpbench.board.leaderboard import write_leaderboard

    folders = [Path(folder) for folder in args.dirs]
    for path in folders:
        if not (path / "runs").is_dir():
            raise ConfigError(f"'{path}' holds no runs/ folder; give an experiment's results folder such as results/ablation.")
    if args.baseline is not None:
        _check_baseline(args.baseline, folders)
    out = Path(args.out) if args.out else folders[0]
    out.mkdir(parents=True, exist_ok=True)
    print(write_leaderboard(out, baseline=args.baseline, roots=folders))
    print(f"written: {out}/leaderboard.md, leaderboard_full.md, leaderboard.csv, leaderboard.tex")
    return 0


def _check_baseline(baseline: str, folders: list[Path]) -> None:
    """``--baseline`` must name a variant present in the folders: otherwise the comparison would be
    silently dropped from the board."""
    from vlpbench.board.collect import collect

    variants = sorted({str(v) for v in collect(folders).runs.get("variant", [])})
    if baseline not in variants:
        raise ConfigError(f"--baseline '{baseline}' is not a variant of these runs{did_you_mean(baseline, variants) or '.'} "
                          f"Variants: {', '.join(variants) or 'none'}. Without a valid baseline the board would have no "
                          "comparison columns.")
