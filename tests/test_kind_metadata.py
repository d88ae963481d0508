"""The metadata model of each kind (vlpbench.core.metadata): every component's declarations are valid,
a malformed declaration is one clear paragraph, and `describe` / `plugins --json` read the model."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from vlpbench.core.errors import RegistryError
from vlpbench.core.kinds import KIND_TABLE, kind_of
from vlpbench.core.metadata import (ComponentMetadata, DatasetMetadata, EncoderMetadata, LauncherMetadata,
                                    ObjectiveMetadata, PresetMetadata, TaskMetadata)
from vlpbench.core.plugins import get_registry, load_plugins

EXPECTED_MODELS = {"dataset": DatasetMetadata, "image_encoder": EncoderMetadata, "text_encoder": EncoderMetadata,
                   "global_loss": ObjectiveMetadata, "positive_miner": ObjectiveMetadata,
                   "negative_weighting": ObjectiveMetadata, "local_head": ObjectiveMetadata,
                   "auxiliary": ObjectiveMetadata, "task": TaskMetadata, "launcher": LauncherMetadata,
                   "preset": PresetMetadata}

#: A plugin with one task; ``{attributes}`` are the class attributes it declares.
PLUGIN = """
from pydantic import BaseModel
from vlpbench.plugin_api import hookimpl

class Probe:
    \"\"\"A task of a third-party plugin.\"\"\"
    class Params(BaseModel):
        folds: int = 5
{attributes}
    def evaluate(self, encoders, source, device):
        return None

@hookimpl
def vlpbench_register(registrar):
    registrar.add("task", "{name}.probe", "{name}:Probe", "a third-party task")
"""


def _plugin(throwaway_plugins, name: str, *attributes: str):  # noqa: ANN001, ANN202
    body = PLUGIN.format(name=name, attributes="".join(f"    {a}\n" for a in attributes))
    return throwaway_plugins.module(name, body)


def test_every_kind_names_its_metadata_model() -> None:
    assert {k.name: k.metadata_model() for k in KIND_TABLE} == EXPECTED_MODELS
    assert all(issubclass(model, ComponentMetadata) for model in EXPECTED_MODELS.values())
    # the declared fields are read from the class attributes the engine reads by convention
    assert ObjectiveMetadata.declared_fields() == {"reference": "reference", "official_code": "official_code",
                                                   "params": "Params", "requires": "requires",
                                                   "batch_negatives": "batch_negatives",
                                                   "feature_requests": "feature_requests"}
    assert set(TaskMetadata.declared_fields()) == {"reference", "official_code", "params", "requires", "metric_version"}


def test_every_registered_component_has_valid_metadata_of_its_kind() -> None:
    """Built-ins and the installed plugins: the model of its kind, and each declared value is the class's."""
    registry = get_registry()
    origins = set()
    for entry in registry.all_entries():
        target = entry.load()
        meta = entry.metadata(target)
        model = kind_of(entry.kind).metadata_model()
        assert type(meta) is model, entry.name
        assert (meta.name, meta.kind, meta.origin, meta.target) == (entry.name, entry.kind, entry.origin, entry.target)
        assert meta.description == entry.summary and meta.distribution and meta.origin_version, entry.name
        for field, attribute in model.declared_fields().items():
            if entry.kind != "preset" and field != "sweeps" and hasattr(target, attribute):
                assert getattr(meta, field) == getattr(target, attribute), (entry.name, field)
        json.dumps(meta.as_dict())  # plain data
        origins.add(entry.origin)
    assert {"vlpbench", "fane", "sista", "cmcgns", "mgca", "gloria", "medclip", "convirt"} <= origins


def test_known_declarations_are_read() -> None:
    registry = get_registry()
    probe = registry.get("task", "linear_probe").metadata()
    assert probe.requires == {"data:labels"} and probe.metric_version == "1"
    assert probe.params is not None and probe.as_dict()["params"].endswith("LinearProbe.Params")
    assert registry.get("local_head", "mgca.cta").metadata().batch_negatives is False
    assert registry.get("local_head", "fane.tcsap").metadata().batch_negatives is True  # the default
    synth = registry.get("dataset", "synthcxr").metadata()
    assert synth.downstream_only_params == {"train_size", "val_size", "test_size"} and "masks" in synth.provides
    assert registry.get("image_encoder", "timm").metadata().optional_features == {"cls_attention"}
    assert registry.get("launcher", "slurm").metadata().sweeps and not registry.get("launcher", "local").metadata().sweeps
    fane = registry.get("preset", "fane").metadata()
    assert fane.overrides["objective.positive_miner"] == {"name": "fane.adaptive_miner"}
    assert fane.origin == "fane" and fane.distribution == "vlpbench-fane"
    assert registry.get("task", "linear_probe").metadata().distribution == "vlpbench"
    # the registration's part alone: nothing imported, the common model
    light = registry.get("task", "linear_probe").metadata(loaded=False)
    assert type(light) is ComponentMetadata and light.params is None


@pytest.mark.parametrize("attribute, field, says", [
    ('requires = "data:labels"', "requires", "valid frozenset"),          # a string where a set is meant
    ('requires = frozenset({"labels"})', "requires", "should match pattern"),  # no side
    ("metric_version = 1", "metric_version", "valid string"),
    ("Params = dict", "Params", "subclass of BaseModel"),
    ('reference = ["arXiv:1"]', "reference", "valid string"),
])
def test_malformed_metadata_is_one_paragraph_naming_plugin_component_field_and_fix(
        throwaway_plugins, attribute: str, field: str, says: str) -> None:
    loaded = load_plugins(entry_points=[_plugin(throwaway_plugins, "badmeta", attribute)])
    entry = loaded.registry.get("task", "badmeta.probe")
    with pytest.raises(RegistryError) as info:
        entry.load()
    message = str(info.value)
    assert message.startswith("task 'badmeta.probe' from plugin 'badmeta' (badmeta:Probe) declares invalid metadata")
    assert f"`{field}` = " in message and says in message
    assert "it should be" in message and "e.g. `" + field + " = " in message
    assert "Fix the class attribute(s) of badmeta:Probe" in message
    assert "\n" not in message and "Traceback" not in message
    with pytest.raises(RegistryError, match=f"`{field}`"):
        entry.metadata()
    with pytest.raises(RegistryError, match=f"`{field}`"):
        entry.params_model()


def test_well_formed_third_party_metadata_is_read(throwaway_plugins) -> None:
    ep = _plugin(throwaway_plugins, "goodmeta", 'requires = ["data:labels", "image:patches"]', 'metric_version = "2"',
                 'reference = "arXiv:2511.12215"', 'official_code = "https://example.org/code"')
    entry = load_plugins(entry_points=[ep]).registry.get("task", "goodmeta.probe")
    meta = entry.metadata()
    assert isinstance(meta, TaskMetadata) and meta.requires == {"data:labels", "image:patches"}
    assert meta.declarations() == {"reference": "arXiv:2511.12215", "official_code": "https://example.org/code",
                                   "requires": ["data:labels", "image:patches"], "metric_version": "2"}


def test_a_summary_that_is_not_text_is_refused_at_registration(throwaway_plugins) -> None:
    body = PLUGIN.format(name="badsummary", attributes="").replace('"a third-party task"', "None")
    with pytest.warns(UserWarning, match="badsummary.*summary None"):
        loaded = load_plugins(entry_points=[throwaway_plugins.module("badsummary", body)], strict=False)
    record = next(p for p in loaded.plugins if p.name == "badsummary")
    assert record.status == "failed" and "summary None" in record.reason and "a str" in record.reason


def test_cli_describe_and_check_report_malformed_metadata_without_a_traceback(cli, throwaway_plugins) -> None:
    throwaway_plugins.share(_plugin(throwaway_plugins, "badcli", 'requires = "data:labels"'))
    code, out, err = cli("describe", "badcli.probe")
    assert code == 2 and "`requires` = 'data:labels'" in err and "plugin 'badcli'" in err and "Traceback" not in err
    code, out, err = cli("plugins", "--json", "--kind", "task", "--check")
    assert code == 1
    bad = next(c for c in json.loads(out)["components"] if c["name"] == "badcli.probe")
    assert "`requires`" in bad["check"] and bad["metadata"]["kind"] == "task" and "requires" not in bad["metadata"]
    code, out, err = cli("plugins", "--json", "--kind", "task")  # listing imports nothing: the registration lists it
    assert code == 0 and "badcli.probe" in {c["name"] for c in json.loads(out)["components"]}


def test_describe_shows_the_metadata(cli) -> None:
    code, out, err = cli("describe", "linear_probe", "--json")
    assert code == 0, err
    info = json.loads(out)
    assert info["metadata"]["metric_version"] == "1" and info["metadata"]["requires"] == ["data:labels"]
    assert info["metric_version"] == "1" and info["requires"] == ["data:labels"]  # the keys it had before
    assert info["declares"] == {"requires": ["data:labels"], "metric_version": "1"}
    assert info["distribution"] == "vlpbench" and info["metadata"]["origin"] == "vlpbench"
    code, out, err = cli("describe", "mgca.cta")
    assert code == 0 and "batch_negatives: False" in out and "requires:     image:patches" in out
    code, out, err = cli("describe", "slurm")
    assert code == 0 and "sweeps:" in out and "True" in out


def test_plugins_json_lists_the_metadata(cli) -> None:
    code, out, err = cli("plugins", "--json", "--kind", "local_head")
    assert code == 0, err
    components = {c["name"]: c for c in json.loads(out)["components"]}
    cta = components["mgca.cta"]
    assert {"kind", "name", "origin", "origin_version", "target", "summary"} <= set(cta)  # the keys it always had
    assert cta["distribution"] == "vlpbench-mgca" and cta["metadata"]["description"] == cta["summary"]
    assert "batch_negatives" not in cta["metadata"]  # without --check nothing is imported
    code, out, err = cli("plugins", "--json", "--kind", "local_head", "--check")
    assert code == 0, err
    cta = next(c for c in json.loads(out)["components"] if c["name"] == "mgca.cta")
    assert cta["check"] == "ok" and cta["metadata"]["batch_negatives"] is False
    assert cta["metadata"]["requires"] == ["image:patches"]


def test_listing_imports_no_torch_and_the_table_no_pydantic() -> None:
    code = ("import sys, io, contextlib; from vlpbench.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()): main(['plugins'])\n"
            "table = 'pydantic' in sys.modules\n"
            "with contextlib.redirect_stdout(io.StringIO()): main(['plugins', '--json'])\n"
            "print(table, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split()[-2:] == ["False", "False"]


#: The paper and official code each method and baseline plugin declares (../shared/METHODS.md, BASELINES.md).
DECLARED_SOURCES = {
    "fane": ("arXiv:2511.12215", "https://github.com/Aventador8/FaNe"),
    "sista": ("arXiv:2601.08165", None),  # no public code
    "cmcgns": ("arXiv:2506.11674", "https://github.com/violet-42/CM-CGNS"),
    "gloria": ("GLoRIA, ICCV 2021", "https://github.com/marshuang80/gloria"),
    "mgca": ("MGCA, NeurIPS 2022", "https://github.com/HKU-MedAI/MGCA"),
    "convirt": ("ConVIRT", "https://github.com/jbdel/vilmedic"),
    "medclip": ("MedCLIP, EMNLP 2022", "https://github.com/RyanWangZf/MedCLIP"),
}


def test_every_method_component_names_its_paper_and_official_code() -> None:
    load_plugins()
    seen = set()
    for kind in ("global_loss", "positive_miner", "negative_weighting", "local_head", "auxiliary"):
        for entry in get_registry().entries[kind].values():
            if entry.origin not in DECLARED_SOURCES:
                continue
            paper, code = DECLARED_SOURCES[entry.origin]
            metadata = entry.metadata()
            assert paper in (metadata.reference or ""), (entry.name, metadata.reference)
            assert metadata.official_code == code, (entry.name, metadata.official_code)
            seen.add(entry.origin)
    assert seen == set(DECLARED_SOURCES)  # every plugin has at least one objective component
