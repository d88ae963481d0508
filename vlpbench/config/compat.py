"""Combinations that cannot work, caught before a run starts.

Components declare what they need and what they give as class attributes:

- encoders and datasets: ``provides`` (e.g. ``{"sentences", "words"}`` for a text encoder,
  ``{"reports", "labels", "masks", "boxes"}`` for a dataset);
- losses, heads and tasks: ``requires`` (e.g. ``{"text:sentences"}``, ``{"data:masks"}``).

A requirement is ``"<side>:<capability>"`` where side is ``image``, ``text`` or ``data``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from vlpbench.config.errors import describe
from vlpbench.core.capabilities import declared
from vlpbench.core.errors import ConfigError

if TYPE_CHECKING:
    from vlpbench.config.schema import RunConfig
    from vlpbench.core.registry import Registry


def _provides(registry: Registry, kind: str, name: str) -> set[str]:
    return set(declared(registry.get(kind, name).load(), "provides"))


def check_compatibility(config: RunConfig, registry: Registry, where: Callable[[tuple], str]) -> None:
    from vlpbench.config.loader import component_slots  # lazy: import cycle (config.loader imports this module)

    sides = {
        "image": _provides(registry, "image_encoder", config.model.image_encoder.name),
        "text": _provides(registry, "text_encoder", config.model.text_encoder.name),
        "data": _provides(registry, "dataset", config.data.name),
    }
    problems = []
    for kind, loc, spec in component_slots(config):
        cls: Any = registry.get(kind, spec.name).load()
        provided = dict(sides)
        task_dataset = spec.params().get("dataset") if kind == "task" else None
        if isinstance(task_dataset, dict):
            provided["data"] = _provides(registry, "dataset", task_dataset.get("name", ""))
        for requirement in sorted(declared(cls, "requires")):
            side, _, capability = requirement.partition(":")
            if capability not in provided.get(side, set()):
                giver = {"image": "the image encoder", "text": "the text encoder", "data": "the dataset"}[side]
                problems.append(
                    f"{where(loc)}: {kind} '{spec.name}' needs {capability} from {giver}, which gives only "
                    f"{', '.join(sorted(provided.get(side, set()))) or 'nothing of the kind'}; pick a compatible "
                    f"{'encoder' if side != 'data' else 'dataset'} or drop this component."
                )
    if problems:
        raise ConfigError(" ".join(problems))


def test_cases_beyond_split(resolved: dict[str, Any], where: Callable[[tuple], str]) -> list[str]:
    """Problems with tasks whose ``test_cases`` exceed their dataset's test split, where the dataset
    states that split's size in its parameters (SynthCXR's ``test_size``), so that the mistake stops
    the run before pretraining; for other datasets the task says so when it runs (the finished
    pretraining is reused on the next attempt)."""
    problems = []
    for index, task in enumerate(resolved.get("tasks") or []):  # validated specs: dicts
        data = task.get("dataset") or resolved.get("data") or {}
        cases, size = task.get("test_cases"), data.get("test_size")
        if isinstance(cases, int) and isinstance(size, int) and cases > size:
            loc = ("tasks", index, "test_cases")
            problems.append(f"{where(loc)}: '{describe(loc)}' = {cases}, but the test split of task '{task.get('name')}' "
                            f"has only {size:,} cases (its dataset's test_size); lower test_cases or raise test_size.")
    return problems
