"""The typed component bases (vlpbench.core.component, vlpbench.core.module_component): they store the
parameters and the build context, the builder builds a component that uses them and one that does not
(third-party plugins written before the bases keep working), and the built-ins use them."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import nn

from vlpbench.config.schema import ComponentSpec
from vlpbench.core.build import build_component
from vlpbench.core.component import Component
from vlpbench.core.context import BuildContext
from vlpbench.core.errors import ConfigError
from vlpbench.core.module_component import ModuleComponent
from vlpbench.core.registry import Entry, Registry


class NewStyle(ModuleComponent["NewStyle.Params"]):
    """A torch component that is only its parameters and its computation."""

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        width: int = Field(3, ge=1)

    def forward(self, x):
        return x * self.params.width


class WithLayers(ModuleComponent["WithLayers.Params"]):
    """A component whose constructor does more: it calls the base first, then adds its layers."""

    class Params(BaseModel):
        hidden: int = 4

    def __init__(self, params: WithLayers.Params, context: BuildContext | None = None) -> None:
        super().__init__(params, context)
        self.proj = nn.Linear(self.context.embed_dim, params.hidden)


class OldStyle(nn.Module):
    """Written before the bases existed, as third-party plugins are: it must still build."""

    class Params(BaseModel):
        scale: float = 2.0

    def __init__(self, params: OldStyle.Params, context=None) -> None:
        super().__init__()
        self.params, self.seen_context = params, context


class TaskParams(BaseModel):
    split: str = "test"


class PlainTask(Component[TaskParams]):
    """No nested ``Params``: the type argument is the parameter model."""


def registry_with(*targets: tuple[str, str]) -> Registry:
    registry = Registry()
    for name, attr in targets:
        registry.add(Entry("positive_miner", name, f"{__name__}:{attr}", "tests"))
    return registry


def test_the_base_stores_params_and_context() -> None:
    context = BuildContext(embed_dim=8)
    task = PlainTask(TaskParams(split="val"), context)
    assert task.params.split == "val" and task.context is context
    assert PlainTask(TaskParams()).context is None


def test_the_module_base_is_an_initialised_module_and_the_context_is_no_submodule() -> None:
    context = BuildContext(embed_dim=8)
    built = context.built["image_encoder"] = nn.Linear(2, 2)  # the context refers to other modules
    head = WithLayers(WithLayers.Params(hidden=5), context)
    assert isinstance(head, nn.Module) and isinstance(head, Component)
    assert head.params.hidden == 5 and head.context is context
    assert head.proj.in_features == 8 and head.proj.out_features == 5
    assert sorted(head.state_dict()) == ["proj.bias", "proj.weight"]
    assert all(m is not built for m in head.modules())


def test_params_come_from_the_type_argument_only_when_the_class_defines_none() -> None:
    assert PlainTask.Params is TaskParams
    assert NewStyle.Params.__qualname__ == "NewStyle.Params"
    assert not hasattr(Component, "Params")


def test_build_builds_a_component_on_the_base_and_an_old_style_one() -> None:
    registry = registry_with(("tests.new", "NewStyle"), ("tests.old", "OldStyle"), ("tests.plain", "PlainTask"))
    context = BuildContext()
    new = build_component(registry, "positive_miner", ComponentSpec(name="tests.new", width=5), context)
    old = build_component(registry, "positive_miner", {"name": "tests.old", "scale": 0.5}, context)
    plain = build_component(registry, "positive_miner", ComponentSpec(name="tests.plain", split="val"), context)
    assert type(new) is NewStyle and new.params.width == 5 and new.context is context
    assert type(old) is OldStyle and old.params.scale == 0.5 and old.seen_context is context
    assert type(plain) is PlainTask and plain.params == TaskParams(split="val")
    with pytest.raises(ConfigError, match="(?s)tests.new.*width"):
        build_component(registry, "positive_miner", ComponentSpec(name="tests.new", width=0), context)


def test_the_builtins_use_the_bases_without_changing_their_parameters() -> None:
    from vlpbench.objective.global_losses import InfoNCELoss
    from vlpbench.objective.miners import IdentityMiner, OracleMiner
    from vlpbench.tasks.zero_shot import ZeroShot

    for cls in (InfoNCELoss, IdentityMiner, OracleMiner):
        assert issubclass(cls, ModuleComponent)
        assert "__init__" not in vars(cls) or cls is InfoNCELoss
    assert issubclass(ZeroShot, Component) and not issubclass(ZeroShot, nn.Module)
    loss = InfoNCELoss(InfoNCELoss.Params(temperature=0.1, learnable=False))
    assert loss.params.temperature == 0.1 and loss.context is None and list(loss.state_dict()) == ["log_scale"]
    assert InfoNCELoss.Params().model_dump() == {"temperature": 0.07, "learnable": True, "max_logit_scale": 100.0}
    with pytest.raises(ValidationError):
        OracleMiner.Params(mode="other")
