"""``vlpbench new-plugin``: write a ready-to-install plugin distribution.

The scaffold has one working, vectorised example component per chosen kind, each with its pydantic
parameter model and a docstring template that asks for the source paper and any interpretation;
tests that pass out of the box; a README; and an experiment file that uses the components on
SynthCXR. Replace the examples with your method, keep the tests honest, then run
``vlpbench check-plugin <name>``.
"""

from __future__ import annotations

import re
import textwrap
from importlib import metadata
from pathlib import Path

from vlpbench import __version__
from vlpbench.core.errors import ConfigError
from vlpbench.core.hookspecs import ENTRY_POINT_GROUP
from vlpbench.core.plugins import get_plugins
from vlpbench.devkit.scaffold.components import DOCSTRING, MODULES
from vlpbench.devkit.scaffold.generated_tests import tests_module

KINDS = ("positive_miner", "negative_weighting", "local_head", "auxiliary", "global_loss", "task", "image_encoder",
         "text_encoder", "dataset")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

def _files(name: str, kinds: list[str]) -> dict[str, str]:
    package = f"vlpbench_{name}"
    registrations = []
    for kind in kinds:
        module, cls, summary, _ = MODULES[kind]
        registrations.append(f'    ("{kind}", "{name}.{module}", "{package}.{module}:{cls}", "{summary}"),')
    files = {
        "pyproject.toml": f'''[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "vlpbench-{name}"
version = "0.1.0"
description = "<one line: the method these vlpbench components implement>"
readme = "README.md"
requires-python = ">=3.10"
dependencies = ["vlpbench>={__version__}", "torch>=2.4", "pydantic>=2.6,<3"]

[project.entry-points.vlpbench]
{name} = "{package}.plugin"

[tool.setuptools.packages.find]
where = ["src"]
''',
        f"src/{package}/__init__.py": '"""vlpbench components of <method> (<paper>)."""\n\n__version__ = "0.1.0"\n',
        f"src/{package}/plugin.py": f'''"""Registers the components with vlpbench (entry point ``{name}``)."""

from __future__ import annotations

from vlpbench.plugin_api import Registrar, hookimpl

COMPONENTS = [
{chr(10).join(registrations)}
]


@hookimpl
def vlpbench_register(registrar: Registrar) -> None:
    registrar.add_all(COMPONENTS)
''',
        f"tests/test_{name}.py": tests_module(name, kinds),
        f"experiments/{name}.yaml": _experiment(name, kinds),
        "README.md": _readme(name, kinds),
    }
    for kind in kinds:
        module, cls, summary, body = MODULES[kind]
        doc = textwrap.indent(DOCSTRING.format(summary=summary[0].upper() + summary[1:] + "."), "    ").lstrip()
        files[f"src/{package}/{module}.py"] = (body.replace("{docstring}", doc).replace("{plugin}", name)
                                               .replace("{{", "{").replace("}}", "}").lstrip())
    return files


def _experiment(name: str, kinds: list[str]) -> str:
    variant = []
    if "positive_miner" in kinds:
        variant.append(f"objective.positive_miner: {{name: {name}.miner}}")
    if "negative_weighting" in kinds:
        variant.append(f"objective.negative_weighting: [{{name: {name}.weighting}}]")
    if "local_head" in kinds:
        variant.append(f"objective.local_heads: [{{name: {name}.head}}]")
    if "auxiliary" in kinds:
        variant.append(f"objective.auxiliaries: [{{name: {name}.auxiliary, weight: 0.5}}]")
    if "global_loss" in kinds:
        variant.append(f"objective.global: {{name: {name}.loss}}")
    overrides = "\n".join(f"    {line}" for line in variant) or "    {}"
    task = f"\n  - {{name: {name}.task}}" if "task" in kinds else ""
    encoder = (f"\n  {name}-encoder: {{model.image_encoder: {{name: {name}.encoder}}}}"
               if "image_encoder" in kinds else "")
    if "text_encoder" in kinds:
        encoder += f"\n  {name}-text: {{model.text_encoder: {{name: {name}.text_encoder, layers: 1}}}}"
    data_hint = (f"# Score on your own labelled folder: add to tasks\n#   - {{name: linear_probe, dataset: {{name: {name}.dataset, "
                 "root: /path/to/copy}}\n" if "dataset" in kinds else "")
    return f"""# The {name} components against CLIP on a small SynthCXR (minutes on a CPU).
{data_hint}
name: {name}
seeds: [0]
baseline: clip
data: {{name: synthcxr, image_size: 32, pretrain_size: 256, train_size: 64, val_size: 32, test_size: 64}}
model:
  text_encoder: {{name: bert, layers: 1, hidden: 64, heads: 2}}
  embed_dim: 64
pretrain: {{epochs: 1, batch_size: 32}}
tasks:
  - {{name: linear_probe, fractions: [0.1, 1.0], max_epochs: 10}}{task}
variants:
  clip: {{}}
  {name}:
{overrides}{encoder}
"""


def _readme(name: str, kinds: list[str]) -> str:
    rows = "\n".join(f"| `{name}.{MODULES[k][0]}` | {k} | {MODULES[k][2]} |" for k in kinds)
    return f"""# vlpbench-{name}

<Method> (<paper>) as [vlpbench](https://pypi.org/project/vlpbench/) components.

| component | kind | what |
|---|---|---|
{rows}

For each component, write: what it does, its parameters with their defaults, its source (paper or
official code) and any interpretation.

```bash
pip install -e .                              # registers the `{name}` entry point
vlpbench plugins                              # lists the {name}.* components
vlpbench check-plugin {name}                  # the conformance suite (run it in your CI)
pytest tests                                  # your own tests
vlpbench run experiments/{name}.yaml          # your components against CLIP on SynthCXR
```

Results of your components reach any vlpbench leaderboard with this plugin's name and version in
each run's `provenance.json`.
"""


def _refuse_taken_name(name: str) -> None:
    """A plugin name that an installed plugin already uses (or the built-in ``vlpbench``) would lose its
    components to the registry's ownership rule (``fane`` owns ``fane.*``): refuse it at once."""
    taken = {p.name: p.distribution or p.name for p in get_plugins().plugins}
    taken.update({ep.name: getattr(ep.dist, "name", ep.name) for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)})
    taken["vlpbench"] = "vlpbench"
    if name in taken:
        raise ConfigError(f"plugin name '{name}' is taken: the installed distribution '{taken[name]}' registers it, so "
                          f"'{name}.*' components belong to it. Choose another name (e.g. '{name}2' or your lab's "
                          "prefix).")


def new_plugin(name: str, destination: Path, kinds: list[str] | None = None) -> Path:
    """Write ``destination/vlpbench-<name>``; refuse to overwrite an existing folder."""
    if not _NAME.match(name):
        raise ConfigError(f"plugin name '{name}' must be lowercase letters, digits and underscores, starting "
                          "with a letter (it becomes the entry point and the component prefix).")
    kinds = list(dict.fromkeys(kinds or KINDS))
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ConfigError(f"new-plugin --kind {unknown[0]}: scaffolds exist for {', '.join(KINDS)}.")
    _refuse_taken_name(name)
    root = destination / f"vlpbench-{name}"
    if root.exists():
        raise ConfigError(f"'{root}' already exists; new-plugin never overwrites. Choose another name or folder.")
    for relative, text in _files(name, kinds).items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root
