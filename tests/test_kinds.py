"""The one table of component kinds (vlpbench.core.kinds): every component meets its kind's interface,
the table agrees with the config schema, and the places that read it behave as when each repeated it."""

from __future__ import annotations

import typing

import pytest

from vlpbench.config.schema import ComponentSpec, RunConfig, ScheduledSpec, ScopedSpec
from vlpbench.core.kinds import (KIND_TABLE, Dataset, ImageEncoder, Launcher, PositiveMiner, SweepLauncher, kind_of,
                                 missing_members, objective_slots, scoped_slots, slots)
from vlpbench.core.registry import KINDS

#: The kinds, their order and descriptions as registry.KINDS declared them before the table existed.
OLD_KINDS = ["dataset", "image_encoder", "text_encoder", "global_loss", "positive_miner", "negative_weighting",
             "local_head", "auxiliary", "task", "launcher", "preset"]


def test_kinds_is_derived_from_the_table_in_the_old_order() -> None:
    assert list(KINDS) == OLD_KINDS
    assert KINDS["launcher"] == "where runs execute (in process, Slurm, ...)"
    assert all(KINDS[k.name] == k.description and k.description for k in KIND_TABLE)


def test_every_registered_component_meets_its_kinds_interface() -> None:
    """Built-ins and the installed plugins (FaNe, SISTA, CM-CGNS): every method the engine calls exists."""
    from vlpbench.core.plugins import get_registry

    registry = get_registry()
    origins, failures = set(), []
    for entry in registry.all_entries():
        interface = kind_of(entry.kind).interface
        if interface is None:  # presets are data
            continue
        missing = missing_members(interface, entry.load())
        origins.add(entry.origin)
        if missing:
            failures.append(f"{entry.kind} {entry.name} ({entry.origin}): missing {', '.join(missing)}")
    assert not failures, "\n".join(failures)
    assert {"vlpbench", "fane", "sista", "cmcgns"} <= origins  # the plugins were checked too


def test_built_components_are_instances_of_their_protocol() -> None:
    """runtime_checkable: a built miner, encoder and data source pass isinstance, attributes included."""
    import torch

    from vlpbench.core.build import build_component
    from vlpbench.core.context import BuildContext
    from vlpbench.core.plugins import get_registry

    registry = get_registry()
    context = BuildContext(embed_dim=16, image_size=32)
    miner = build_component(registry, "positive_miner", ComponentSpec(name="identity"), context)
    assert isinstance(miner, PositiveMiner) and isinstance(miner, torch.nn.Module)
    encoder = build_component(registry, "image_encoder", ComponentSpec(name="timm", arch="resnet18"), context)
    assert isinstance(encoder, ImageEncoder) and missing_members(ImageEncoder, encoder) == []
    source = build_component(registry, "dataset", ComponentSpec(name="synthcxr", image_size=32, pretrain_size=16,
                                                                train_size=8, val_size=8, test_size=8), context)
    assert isinstance(source, Dataset) and missing_members(Dataset, source) == []


def test_missing_members_names_what_is_absent() -> None:
    class NoSweeps:
        def launch(self, experiment, results_root, **options):  # noqa: ANN001, ANN003, ANN201
            return None

    class NotCallable:
        launch = "not a method"

    assert missing_members(Launcher, NoSweeps) == [] and missing_members(Launcher, NoSweeps()) == []
    assert missing_members(SweepLauncher, NoSweeps()) == ["launch_sweep()"]
    assert missing_members(Launcher, NotCallable()) == ["launch()"]  # isinstance alone would accept it

    class Split:
        def split(self, name):  # noqa: ANN001, ANN201
            return name

        def protocol(self):  # noqa: ANN201
            return {}

    assert missing_members(Dataset, Split) == []  # a class is checked for its methods only
    assert missing_members(Dataset, Split()) == ["image_size", "label_names"]


def _field_type(model: type, key: str) -> typing.Any:
    return next(f.annotation for n, f in model.model_fields.items() if (f.alias or n) == key)


def test_every_slot_exists_in_the_run_config_with_the_right_spec_type() -> None:
    config = RunConfig()
    for name, slot in slots():
        model: typing.Any = RunConfig
        for key in slot.path[:-1]:
            model = _field_type(model, key)
        annotation = _field_type(model, slot.path[-1])
        is_list = typing.get_origin(annotation) is list
        assert is_list == slot.many, name
        spec_type = typing.get_args(annotation)[0] if is_list else annotation
        assert issubclass(spec_type, ComponentSpec), name
        assert issubclass(spec_type, ScopedSpec) == slot.scoped, name
        assert issubclass(spec_type, ScheduledSpec) == slot.scheduled, name
        value = slot.read(config)
        assert isinstance(value, list) == slot.many
    assert {name for name, _ in slots()} == set(KINDS) - {"launcher", "preset"}


def test_every_component_spec_of_the_run_config_has_a_slot() -> None:
    """The other direction: a component field added to the schema without a row in the table fails here."""
    found = set()

    def walk(model: type, path: tuple[str, ...]) -> None:
        for name, info in model.model_fields.items():
            key = path + (info.alias or name,)
            annotation = info.annotation
            inner = typing.get_args(annotation)[0] if typing.get_origin(annotation) is list else annotation
            if isinstance(inner, type) and issubclass(inner, ComponentSpec):
                found.add(key)
            elif isinstance(inner, type) and hasattr(inner, "model_fields"):
                walk(inner, key)

    walk(RunConfig, ())
    assert found == {slot.path for _, slot in slots()}


def test_the_json_schema_slots_are_the_ones_it_listed_before() -> None:
    from vlpbench.config.jsonschema import SCHEDULED, SLOTS

    assert SLOTS == {
        ("ExperimentFile", "data"): "dataset", ("ModelConfig", "image_encoder"): "image_encoder",
        ("ModelConfig", "text_encoder"): "text_encoder", ("ObjectiveConfig", "global"): "global_loss",
        ("ObjectiveConfig", "positive_miner"): "positive_miner",
        ("ObjectiveConfig", "negative_weighting"): "negative_weighting",
        ("ObjectiveConfig", "local_heads"): "local_head", ("ObjectiveConfig", "auxiliaries"): "auxiliary",
        ("ExperimentFile", "tasks"): "task"}
    assert SCHEDULED == {"local_head", "auxiliary"}


def test_component_slots_lists_every_spec_in_the_old_order() -> None:
    from vlpbench.config.loader import component_slots

    config = RunConfig.model_validate({
        "objective": {"negative_weighting": [{"name": "uniform"}, {"name": "uniform"}],
                      "local_heads": [{"name": "gloria_local"}], "auxiliaries": [{"name": "mim"}]},
        "tasks": [{"name": "linear_probe", "dataset": {"name": "synthcxr", "image_size": 32}},
                  {"name": "retrieval"}]})
    slots = [(kind, loc, spec.name) for kind, loc, spec in component_slots(config)]
    assert slots == [
        ("dataset", ("data",), "synthcxr"), ("image_encoder", ("model", "image_encoder"), "timm"),
        ("text_encoder", ("model", "text_encoder"), "bert"), ("global_loss", ("objective", "global"), "infonce"),
        ("positive_miner", ("objective", "positive_miner"), "identity"),
        ("negative_weighting", ("objective", "negative_weighting", 0), "uniform"),
        ("negative_weighting", ("objective", "negative_weighting", 1), "uniform"),
        ("local_head", ("objective", "local_heads", 0), "gloria_local"),
        ("auxiliary", ("objective", "auxiliaries", 0), "mim"),
        ("task", ("tasks", 0), "linear_probe"), ("dataset", ("tasks", 0, "dataset"), "synthcxr"),
        ("task", ("tasks", 1), "retrieval")]


def test_identity_drops_every_scope_on_one_process_and_keeps_them_on_two() -> None:
    from vlpbench.config.identity import identity_config

    resolved = {"objective": {"negative_scope": "gathered", "global": {"name": "infonce"},
                              "positive_miner": {"name": "identity", "scope": "local"},
                              "negative_weighting": [{"name": "uniform", "scope": "gathered"}],
                              "local_heads": [{"name": "h", "scope": "local", "weight": 1.0}],
                              "auxiliaries": [{"name": "a", "scope": "gathered"}]}}
    single = identity_config(resolved, 1)["objective"]
    assert single == {"global": {"name": "infonce"}, "positive_miner": {"name": "identity"},
                      "negative_weighting": [{"name": "uniform"}], "local_heads": [{"name": "h", "weight": 1.0}],
                      "auxiliaries": [{"name": "a"}]}
    assert resolved["objective"]["positive_miner"]["scope"] == "local"  # the input is left as it was
    assert identity_config(resolved, 2) == {**resolved, "world_size": 2}
    assert identity_config({"objective": {"positive_miner": None, "negative_weighting": None}}, 1) == {
        "objective": {"positive_miner": None, "negative_weighting": None}}


def test_board_lists_the_scopes_of_miner_weightings_heads_and_auxiliaries_in_order() -> None:
    from vlpbench.board.ablation import negative_scope

    objective = {"negative_scope": "local", "positive_miner": {"name": "m", "scope": "gathered"},
                 "negative_weighting": [{"name": "w", "scope": "gathered"}],
                 "local_heads": [{"name": "h", "scope": "local"}], "auxiliaries": [{"name": "a", "scope": "gathered"}]}
    assert negative_scope({"objective": objective}) == "local (m: gathered, w: gathered, a: gathered)"
    assert negative_scope({"objective": {"negative_scope": "gathered"}}) == "gathered"
    assert negative_scope({}) == "local"
    assert [name for name, _ in scoped_slots()] == ["positive_miner", "negative_weighting", "local_head", "auxiliary"]


@pytest.mark.parametrize("kind, expected", [
    ("positive_miner", {"positive_miner": {"name": "x"}}), ("negative_weighting", {"negative_weighting": [{"name": "x"}]}),
    ("global_loss", {"global": {"name": "x"}}), ("local_head", {"local_heads": [{"name": "x"}]}),
    ("auxiliary", {"auxiliaries": [{"name": "x"}]})])
def test_objective_components_enter_the_objective_as_before(kind: str, expected: dict) -> None:
    from vlpbench.devkit.conformance import OBJECTIVE_SLOTS
    from vlpbench.devkit.distributed_check import component_cases

    assert OBJECTIVE_SLOTS[kind]({"name": "x"}) == expected
    assert [(c.objective, c.scope) for c in component_cases(kind, "x")] == [(expected, "local"), (expected, "gathered")]


def test_only_objective_kinds_enter_the_objective() -> None:
    from vlpbench.devkit.conformance import OBJECTIVE_SLOTS
    from vlpbench.devkit.distributed_check import component_cases

    assert list(OBJECTIVE_SLOTS) == [name for name, _ in objective_slots()] == [
        "global_loss", "positive_miner", "negative_weighting", "local_head", "auxiliary"]
    assert [k.name for k in KIND_TABLE if k.builds_alone] == ["dataset", "image_encoder", "text_encoder"]
    for kind in ("task", "dataset", "launcher", "no_such_kind"):
        with pytest.raises(KeyError):
            component_cases(kind, "x")


def test_the_scaffold_has_an_example_for_every_kind_a_config_names() -> None:
    """`vlpbench new-plugin --kind` keeps its own order (the generated files follow it); its set is the table's."""
    from vlpbench.devkit.scaffold import KINDS as SCAFFOLD_KINDS

    assert sorted(SCAFFOLD_KINDS) == sorted(name for name, _ in slots())
