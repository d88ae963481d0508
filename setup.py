"""Wheels carry the repository's experiments (``experiments/*.yaml``) as package data in
``vlpbench/experiments/``, so that ``vlpbench run quickstart`` works with only the wheel installed
(see :mod:`vlpbench.config.shipped`). The repository's folder stays the one source: this copies it at
build time. Everything else is in pyproject.toml."""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithExperiments(build_py):
    def run(self) -> None:
        super().run()
        source = Path(__file__).resolve().parent / "experiments"
        target = Path(self.build_lib) / "vlpbench" / "experiments"
        target.mkdir(parents=True, exist_ok=True)
        for path in sorted(source.glob("*.yaml")):
            (target / path.name).write_text(path.read_text())


setup(cmdclass={"build_py": BuildWithExperiments})
