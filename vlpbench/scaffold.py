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
from pathlib import Path

from vlpbench import __version__
from vlpbench.errors import ConfigError

KINDS = ("positive_miner", "negative_weighting", "local_head")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

DOCSTRING = '''"""{summary}

Source: <paper title, arXiv id or venue; official code repository and file, if any>.
Formula: <the formula this implements, in the notation of vlpbench's METHODS.md>.
Interpretation: <every choice the source does not fix, and the alternatives kept configurable>.
"""'''

MODULES = {
    "positive_miner": ("miner", "SimilarityMiner", "pairs whose detached text embeddings are similar become positives", '''
from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from vlpbench.features import AlignmentInputs
from vlpbench.objective.contracts import Positives


class SimilarityMiner(nn.Module):
    {docstring}

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        threshold: float = Field(0.95, description="cosine above which two reports count as the same")

    def __init__(self, params: "SimilarityMiner.Params", context=None) -> None:
        super().__init__()
        self.params = params

    def forward(self, inputs: AlignmentInputs) -> Positives:
        text = F.normalize(inputs.text.global_emb.detach(), dim=-1)  # detached: a miner sends no gradient
        similar = (text @ text.t()) > self.params.threshold
        eye = torch.eye(len(text), dtype=torch.bool, device=text.device)
        return Positives((similar | eye).to(inputs.image.global_emb.dtype))
'''),
    "negative_weighting": ("weighting", "HardnessWeighting", "up-weights hard negatives: Ω_ij = 1 + α·max(cos(v_i, t_j), 0)", '''
from __future__ import annotations

import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from vlpbench.features import AlignmentInputs
from vlpbench.objective.contracts import DirectionAdjustment, NegativeAdjustment, Positives


class HardnessWeighting(nn.Module):
    {docstring}

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        alpha: float = Field(1.0, ge=0, description="extra weight of a negative per unit of cosine")

    def __init__(self, params: "HardnessWeighting.Params", context=None) -> None:
        super().__init__()
        self.params = params

    def forward(self, inputs: AlignmentInputs, positives: Positives) -> NegativeAdjustment:
        v = F.normalize(inputs.image.global_emb, dim=-1)
        t = F.normalize(inputs.text.global_emb, dim=-1)
        weight = 1.0 + self.params.alpha * (v @ t.t()).detach().clamp_min(0)
        return NegativeAdjustment(DirectionAdjustment(weight=weight), DirectionAdjustment(weight=weight.t()))
'''),
    "local_head": ("head", "MaxSimilarityHead", "word-patch max-similarity alignment (FILIP-style), within each report", '''
from __future__ import annotations

import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from vlpbench.features import AlignmentInputs
from vlpbench.objective.local_losses import mean_over_reports


class MaxSimilarityHead(nn.Module):
    {docstring}

    requires = frozenset({{"image:patches", "text:words"}})

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        temperature: float = Field(0.1, gt=0)

    def __init__(self, params: "MaxSimilarityHead.Params", context=None) -> None:
        super().__init__()
        self.params = params

    def forward(self, inputs: AlignmentInputs) -> dict[str, Tensor]:
        words = F.normalize(inputs.text.word_emb, dim=-1)  # [B,M,D]
        patches = F.normalize(inputs.image.patch_emb, dim=-1)  # [B,N,D]
        mask = inputs.text.word_mask
        best = (words @ patches.transpose(1, 2)).amax(-1) / self.params.temperature  # [B,M]
        per_report = -(best * mask).sum(1) / mask.sum(1).clamp_min(1)  # pull each word to its best patch
        return {{"maxsim": mean_over_reports(per_report, mask.any(1))}}
'''),
}


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

from vlpbench.hookspecs import hookimpl

COMPONENTS = [
{chr(10).join(registrations)}
]


@hookimpl
def vlpbench_register(registrar) -> None:
    for kind, component, target, summary in COMPONENTS:
        registrar.add(kind, component, target, summary)
''',
        f"tests/test_{name}.py": _tests(name, kinds),
        f"experiments/{name}.yaml": _experiment(name, kinds),
        "README.md": _readme(name, kinds),
    }
    for kind in kinds:
        module, cls, summary, body = MODULES[kind]
        doc = textwrap.indent(DOCSTRING.format(summary=summary[0].upper() + summary[1:] + "."), "    ").lstrip()
        files[f"src/{package}/{module}.py"] = body.replace("{docstring}", doc).replace("{{", "{").replace("}}", "}").lstrip()
    return files


def _tests(name: str, kinds: list[str]) -> str:
    package = f"vlpbench_{name}"
    lines = ['"""Out-of-the-box tests of the scaffolded components: replace them with hand-worked values."""', "",
             "import torch", "", "from vlpbench.objective.contracts import Positives",
             "from vlpbench.testing import feature_inputs, permute_inputs", ""]
    if "positive_miner" in kinds:
        lines += [f"from {package}.miner import SimilarityMiner", "", "",
                  "def test_identical_reports_are_positives() -> None:",
                  "    text = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]])",
                  "    miner = SimilarityMiner(SimilarityMiner.Params(threshold=0.9))",
                  "    positives = miner(feature_inputs(text_global=text, image_global=torch.randn(3, 2)))",
                  "    assert positives.affinity.tolist() == [[1, 1, 0], [1, 1, 0], [0, 0, 1]]", ""]
    if "negative_weighting" in kinds:
        lines += [f"from {package}.weighting import HardnessWeighting", "", "",
                  "def test_weights_grow_with_similarity() -> None:",
                  "    v = t = torch.tensor([[1.0, 0.0], [0.6, 0.8]])",
                  "    adjustment = HardnessWeighting(HardnessWeighting.Params(alpha=1.0))(",
                  "        feature_inputs(image_global=v, text_global=t), Positives(torch.eye(2)))",
                  "    assert torch.allclose(adjustment.image_to_text.weight, torch.tensor([[2.0, 1.6], [1.6, 2.0]]))", ""]
    if "local_head" in kinds:
        lines += [f"from {package}.head import MaxSimilarityHead", "", "",
                  "def test_head_is_finite_and_ignores_batch_order() -> None:",
                  "    head = MaxSimilarityHead(MaxSimilarityHead.Params())",
                  "    inputs = feature_inputs(batch_size=4, word_counts=[6, 2, 4, 3])",
                  "    out = head(inputs)['maxsim']",
                  "    again = head(permute_inputs(inputs, torch.tensor([2, 0, 3, 1])))['maxsim']",
                  "    assert torch.isfinite(out) and torch.allclose(out, again)", ""]
    return "\n".join(lines)


def _experiment(name: str, kinds: list[str]) -> str:
    variant = []
    if "positive_miner" in kinds:
        variant.append(f"objective.positive_miner: {{name: {name}.miner}}")
    if "negative_weighting" in kinds:
        variant.append(f"objective.negative_weighting: [{{name: {name}.weighting}}]")
    if "local_head" in kinds:
        variant.append(f"objective.local_heads: [{{name: {name}.head}}]")
    overrides = "\n".join(f"    {line}" for line in variant)
    return f"""# The {name} components against CLIP on a small SynthCXR (minutes on a CPU).
name: {name}
seeds: [0]
baseline: clip
data: {{name: synthcxr, image_size: 32, pretrain_size: 256, train_size: 64, val_size: 32, test_size: 64}}
model:
  text_encoder: {{name: bert, layers: 1, hidden: 64, heads: 2}}
  embed_dim: 64
pretrain: {{epochs: 1, batch_size: 32}}
tasks:
  - {{name: linear_probe, fractions: [0.1, 1.0], max_epochs: 10}}
variants:
  clip: {{}}
  {name}:
{overrides}
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
    from importlib import metadata

    from vlpbench.hookspecs import ENTRY_POINT_GROUP
    from vlpbench.plugins import get_plugins

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
