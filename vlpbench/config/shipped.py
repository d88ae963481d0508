"""The experiments vlpbench ships: ``vlpbench run quickstart`` and ``vlpbench init NAME`` work with
only the installed package, from any folder.

The repository's ``experiments/*.yaml`` are the one source: a wheel carries copies of them in
``vlpbench/experiments/`` (copied at build time by ``setup.py``), and a source checkout or an
editable install reads the repository's folder directly. A command-line argument that is a
file path is always the file; a bare name (``quickstart``) that is not a file in the current
folder is looked up among the shipped experiments.
"""

from __future__ import annotations

from pathlib import Path

from vlpbench.core.errors import ConfigError, did_you_mean


def experiment_folders() -> list[Path]:
    """Where shipped experiments live: the package's copy (wheels), then the source checkout's."""
    package = Path(__file__).resolve().parents[1]
    return [folder for folder in (package / "experiments", package.parent / "experiments") if folder.is_dir()]


def shipped_experiments() -> dict[str, Path]:
    """name → file of every shipped experiment (the package's copy wins over the checkout's)."""
    found: dict[str, Path] = {}
    for folder in reversed(experiment_folders()):
        found.update({path.stem: path for path in sorted(folder.glob("*.yaml"))})
    return dict(sorted(found.items()))


def _is_bare_name(text: str) -> bool:
    return "/" not in text and "\\" not in text and not text.endswith((".yaml", ".yml"))


def resolve_experiment(text: str) -> Path:
    """The experiment file an argument names: an existing path, or a shipped experiment's name."""
    path = Path(text)
    if path.is_file() or not _is_bare_name(text):
        if not path.exists() and path.stem in shipped_experiments():
            raise ConfigError(f"'{text}' does not exist here. vlpbench ships an experiment named '{path.stem}': run it "
                              f"by name (`vlpbench run {path.stem}`) or copy it here to edit (`vlpbench init "
                              f"{path.stem}`).")
        return path
    shipped = shipped_experiments()
    if text in shipped:
        return shipped[text]
    raise ConfigError(f"'{text}' is neither a file nor an experiment vlpbench ships{did_you_mean(text, list(shipped)) or '.'} "
                      f"Shipped: {', '.join(shipped) or 'none found'}; or give the path of an experiment YAML file.")


def init_experiment(name: str, out: Path | None = None, force: bool = False) -> Path:
    """Copy the shipped experiment ``name`` to ``out`` (default ``./NAME.yaml``) to edit."""
    shipped = shipped_experiments()
    if name not in shipped:
        raise ConfigError(f"vlpbench ships no experiment named '{name}'{did_you_mean(name, list(shipped)) or '.'} "
                          f"Shipped: {', '.join(shipped)}.")
    target = Path(out) if out is not None else Path(f"{name}.yaml")
    if target.exists() and not force:
        raise ConfigError(f"'{target}' exists already; edit it, pass --out to write elsewhere, or --force to overwrite it.")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(shipped[name].read_text())
    return target
